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

// Datapath is what Build reads of the data path (*datapath.Datapath).
type Datapath interface {
	ServiceStats(id uint32) (datapath.Stats, error)
	BackendStats(id uint32) (datapath.Stats, error)
	Counters() (map[datapath.Counter]uint64, error)
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
// joined with the configuration, the data path's counters, and the
// connections per backend id and flow-table entries the last sweep of the
// flow table counted (datapath.Sweeper): no walk per request, however
// large the table.
// A backend a failed check took out without inhibit_on_failure is not
// listed, as ipvsadm no longer lists it either.
func Build(cfg *service.Config, bst balancer.State, dp Datapath, perBackend map[uint32]datapath.Conns, entries int) (api.State, error) {
	byKey := map[datapath.ServiceKey]balancer.ServiceState{}
	for _, s := range bst.Services {
		byKey[s.Key] = s
	}

	stats := newStatsOf(dp, bst)
	out := api.State{Taken: time.Now(), FlowEntries: uint64(entries)}
	for _, s := range cfg.Services {
		bs, ok := byKey[reconcile.DatapathKey(s.Key())]
		as := api.Service{
			Proto:       strings.ToUpper(s.Proto.String()),
			Addr:        s.VIP.String(),
			Port:        s.Port,
			Scheduler:   s.Scheduler,
			Persistence: uint32(s.Persistence / time.Second),
			VLAN:        uint16(s.VLAN),
			Installed:   ok && bs.Installed,
		}
		if ok {
			if st, err := stats.service(bs.ID); err == nil {
				as.Stats = apiStats(st)
			}
		}
		for _, be := range s.Backends {
			ab := api.Backend{Addr: be.Addr.String(), Port: be.Port, ConfigWeight: uint32(max(be.Weight, 0)), Forward: be.Forward.Method.String(), Unresolved: true}
			if ok && !fillBackend(&ab, bs, be.AddrPort(), stats, perBackend) {
				// Taken out by a failed health check without
				// inhibit_on_failure: ipvsadm no longer lists it either.
				continue
			}
			as.ActiveConn += ab.ActiveConn
			as.InActConn += ab.InActConn
			as.Backends = append(as.Backends, ab)
		}
		// The sorry server is listed while it serves, as keepalived adds
		// it to IPVS only when every real server is down; with
		// sorry_server_inhibit it stays listed at weight 0 otherwise
		// (keepalived lists it so only once it has served).
		if ss := s.SorryServer; ok && ss != nil && !slices.ContainsFunc(s.Backends, func(b service.Backend) bool { return b.AddrPort() == ss.AddrPort() }) {
			ab := api.Backend{Addr: ss.Addr.String(), Port: ss.Port, ConfigWeight: 1, Forward: ss.Forward.Method.String(), Unresolved: true, Sorry: true}
			if fillBackend(&ab, bs, ss.AddrPort(), stats, perBackend) {
				as.ActiveConn += ab.ActiveConn
				as.InActConn += ab.InActConn
				as.Backends = append(as.Backends, ab)
			}
		}
		out.Services = append(out.Services, as)
	}
	counters, err := dp.Counters()
	if err != nil {
		return api.State{}, err
	}
	out.Counters = map[string]uint64{}
	for c, v := range counters {
		out.Counters[c.String()] = v
	}
	return out, nil
}

// fillBackend fills in what the balancer serves of the backend at key, and
// reports whether it serves it at all (unresolved counts: it keeps its
// place).
func fillBackend(ab *api.Backend, bs balancer.ServiceState, key netip.AddrPort, stats statsOf, perBackend map[uint32]datapath.Conns) bool {
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
		c := perBackend[id]
		ab.ActiveConn, ab.InActConn = c.Active, c.Inactive
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
