package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/reconcile"
	"github.com/xlb-project/xlb/internal/service"
)

// apiServer serves the runtime API on a unix socket that only root can
// open (mode 0600 in a 0700 directory).
type apiServer struct {
	d       *Daemon
	ln      net.Listener
	srv     *http.Server
	reloads chan chan error
}

func (d *Daemon) serveAPI() (*apiServer, error) {
	path := d.opts.Socket
	if err := socketDir(path); err != nil {
		return nil, err
	}
	// Two daemons on different pin directories may still be given one
	// socket: the second must not take it over.
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("api socket %s: another xlb daemon is listening", path)
	}
	// A socket left by a daemon that died is in the way.
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	s := &apiServer{d: d, ln: ln, reloads: make(chan chan error)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathState, s.state)
	mux.HandleFunc("POST "+api.PathReload, s.reload)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *apiServer) close() {
	_ = s.srv.Close()
	_ = os.Remove(s.ln.Addr().String())
}

func (s *apiServer) state(w http.ResponseWriter, _ *http.Request) {
	st, err := s.d.State()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// reload hands the request to the daemon's loop, so reloads, neighbour
// changes and health events apply one at a time.
func (s *apiServer) reload(w http.ResponseWriter, r *http.Request) {
	done := make(chan error, 1)
	select {
	case s.reloads <- done:
	case <-r.Context().Done():
		return
	}
	var err error
	select {
	case err = <-done:
	case <-r.Context().Done():
		return
	}
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, api.ReloadResult{Errors: strings.Split(err.Error(), "\n")})
		return
	}
	writeJSON(w, http.StatusOK, api.ReloadResult{OK: true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// State is the running state for `xlb list`: the balancer's view joined
// with the configuration and the data path's counters and flows.
func (d *Daemon) State() (api.State, error) {
	d.mu.Lock()
	cfg, vs := d.cfg, d.vrrp
	d.mu.Unlock()
	bst := d.bal.State()
	byKey := map[datapath.ServiceKey]balancer.ServiceState{}
	for _, s := range bst.Services {
		byKey[s.Key] = s
	}

	// Connections as the last sweep of the flow table counted them: no
	// walk per request, however large the table.
	perBackend := d.sweeper.counts()

	out := api.State{Taken: time.Now(), Config: d.opts.ConfigPath}
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
			if st, err := d.dp.ServiceStats(bs.ID); err == nil {
				as.Stats = apiStats(st)
			}
		}
		for _, be := range s.Backends {
			ab := api.Backend{Addr: be.Addr.String(), Port: be.Port, ConfigWeight: uint32(max(be.Weight, 0)), Unresolved: true}
			if ok && !fillBackend(&ab, bs, be.AddrPort(), d.dp, perBackend) {
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
			ab := api.Backend{Addr: ss.Addr.String(), Port: ss.Port, ConfigWeight: 1, Unresolved: true, Sorry: true}
			if fillBackend(&ab, bs, ss.AddrPort(), d.dp, perBackend) {
				as.ActiveConn += ab.ActiveConn
				as.InActConn += ab.InActConn
				as.Backends = append(as.Backends, ab)
			}
		}
		out.Services = append(out.Services, as)
	}
	if vs != nil {
		out.VRRP = vs.state()
	}
	counters, err := d.dp.Counters()
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
func fillBackend(ab *api.Backend, bs balancer.ServiceState, key netip.AddrPort, dp *datapath.Datapath, perBackend map[uint32]datapath.Conns) bool {
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
		if st, err := dp.BackendStats(id); err == nil {
			ab.Stats = apiStats(st)
		}
		return true
	}
	return false
}

func apiStats(s datapath.Stats) api.Stats {
	return api.Stats{Conns: s.Flows, InPkts: s.Packets, InBytes: s.Bytes}
}
