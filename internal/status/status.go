// Package status assembles what xlb serves, as `xlb list` shows it: the
// configuration joined with the balancer's state and the data path's
// counters, with connections counted as IPVS counts them.
package status

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/reconcile"
	"github.com/xlb-project/xlb/internal/service"
)

// conns counts a backend's connections as IPVS does.
type conns struct{ active, inactive uint64 }

// IPVS's default timeouts (ipvsadm --set): how long a flow counts as a
// connection after its last packet, by state.
var connTimeouts = map[datapath.FlowState]time.Duration{
	datapath.FlowSYN:   60 * time.Second,
	datapath.FlowEst:   15 * time.Minute,
	datapath.FlowFIN:   2 * time.Minute,
	datapath.FlowClose: 10 * time.Second,
	datapath.FlowUDP:   5 * time.Minute,
}

// Datapath is what Build reads of the data path (*datapath.Datapath).
type Datapath interface {
	Flows(func(datapath.FlowEntry) bool) error
	ServiceStats(id uint32) (datapath.Stats, error)
	BackendStats(id uint32) (datapath.Stats, error)
}

// bulkStats is a Datapath that reads every counter with one call
// (*datapath.Datapath): a state of 1,000 services x 10 backends would
// otherwise cost 11,000 syscalls.
type bulkStats interface {
	AllStats(maxService, maxBackend uint32) (svc, be []datapath.Stats, err error)
}

// statsOf reads the counters of the ids bst serves: all at once when dp
// can, else one id at a time.
type statsOf struct {
	dp      Datapath
	svc, be []datapath.Stats
}

func newStatsOf(dp Datapath, bst balancer.State) statsOf {
	s := statsOf{dp: dp}
	bulk, ok := dp.(bulkStats)
	if !ok {
		return s
	}
	var maxSvc, maxBe uint32
	for _, ss := range bst.Services {
		maxSvc = max(maxSvc, ss.ID)
		for _, id := range ss.BackendIDs {
			maxBe = max(maxBe, id)
		}
	}
	if svc, be, err := bulk.AllStats(maxSvc, maxBe); err == nil {
		s.svc, s.be = svc, be
	}
	return s
}

func (s statsOf) service(id uint32) (datapath.Stats, error) {
	if int(id) < len(s.svc) {
		return s.svc[id], nil
	}
	return s.dp.ServiceStats(id)
}

func (s statsOf) backend(id uint32) (datapath.Stats, error) {
	if int(id) < len(s.be) {
		return s.be[id], nil
	}
	return s.dp.BackendStats(id)
}

// Build is the running state for `xlb list`: the balancer's view bst
// joined with the configuration and the data path's counters and flows.
// A backend a failed check took out without inhibit_on_failure is not
// listed, as ipvsadm no longer lists it either.
func Build(cfg *service.Config, bst balancer.State, dp Datapath) (api.State, error) {
	byKey := map[datapath.ServiceKey]balancer.ServiceState{}
	for _, s := range bst.Services {
		byKey[s.Key] = s
	}

	perBackend := map[uint32]*conns{}
	var entries uint64
	err := dp.Flows(func(e datapath.FlowEntry) bool {
		entries++
		if e.Idle > connTimeouts[e.State] {
			return true
		}
		c := perBackend[e.Backend]
		if c == nil {
			c = &conns{}
			perBackend[e.Backend] = c
		}
		if e.State == datapath.FlowEst {
			c.active++
		} else {
			c.inactive++
		}
		return true
	})
	if err != nil {
		return api.State{}, err
	}

	stats := newStatsOf(dp, bst)
	out := api.State{Taken: time.Now(), FlowEntries: entries}
	for _, s := range cfg.Services {
		bs, ok := byKey[reconcile.DatapathKey(s.Key())]
		as := api.Service{
			Proto:       strings.ToUpper(s.Proto.String()),
			Addr:        s.VIP.String(),
			Port:        s.Port,
			Scheduler:   s.Scheduler,
			Persistence: uint32(s.Persistence / time.Second),
			Installed:   ok && bs.Installed,
		}
		if ok {
			if st, err := stats.service(bs.ID); err == nil {
				as.Stats = apiStats(st)
			}
		}
		for _, be := range s.Backends {
			ab := api.Backend{Addr: be.Addr.String(), Port: be.Port, ConfigWeight: uint32(max(be.Weight, 0)), Unresolved: true}
			if ok && !fillBackend(&ab, bs, be.AddrPort(), stats, perBackend) {
				// Taken out by a failed health check without
				// inhibit_on_failure: ipvsadm no longer lists it either.
				continue
			}
			as.Backends = append(as.Backends, ab)
		}
		// The sorry server is listed while it serves, as keepalived adds
		// it to IPVS only when every real server is down; with
		// sorry_server_inhibit it stays listed at weight 0 otherwise
		// (keepalived lists it so only once it has served).
		if ss := s.SorryServer; ok && ss != nil && !slices.ContainsFunc(s.Backends, func(b service.Backend) bool { return b.AddrPort() == ss.AddrPort() }) {
			ab := api.Backend{Addr: ss.Addr.String(), Port: ss.Port, ConfigWeight: 1, Unresolved: true, Sorry: true}
			if fillBackend(&ab, bs, ss.AddrPort(), stats, perBackend) {
				as.Backends = append(as.Backends, ab)
			}
		}
		out.Services = append(out.Services, as)
	}
	return out, nil
}

// fillBackend fills in what the balancer serves of the backend at key, and
// reports whether it serves it at all (unresolved counts: it keeps its
// place).
func fillBackend(ab *api.Backend, bs balancer.ServiceState, key netip.AddrPort, stats statsOf, perBackend map[uint32]*conns) bool {
	for i, b := range bs.Backends {
		if b.Key() != key {
			continue
		}
		id := bs.BackendIDs[i]
		if id == 0 {
			return true
		}
		ab.Unresolved = false
		ab.Weight = b.Weight
		ab.MAC = b.MAC.String()
		if c := perBackend[id]; c != nil {
			ab.ActiveConn, ab.InActConn = c.active, c.inactive
		}
		if st, err := stats.backend(id); err == nil {
			ab.Stats = apiStats(st)
		}
		return true
	}
	return false
}

func apiStats(s datapath.Stats) api.Stats {
	return api.Stats{Conns: s.Flows, InPkts: s.Packets, InBytes: s.Bytes}
}
