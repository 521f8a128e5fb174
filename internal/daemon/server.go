package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/status"
)

// apiServer serves the runtime API on a unix socket that only root can
// open (mode 0600 in a 0700 directory).
type apiServer struct {
	d       *Daemon
	ln      net.Listener
	srv     *http.Server
	reloads chan chan error
}

// listenAPI opens the socket; serve starts answering on it. Until then a
// client's connection waits in the backlog.
func (d *Daemon) listenAPI() (*apiServer, error) {
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
	mux.HandleFunc("POST "+api.PathStop, s.stop)
	mux.HandleFunc("POST "+api.PathOverride, d.ovr.Handler(d.locked))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

func (s *apiServer) serve() {
	go func() { _ = s.srv.Serve(s.ln) }()
}

// stop asks the daemon's loop to stop and remove the data path; the
// client then waits for the socket to go, which shutdown closes last.
func (s *apiServer) stop(w http.ResponseWriter, _ *http.Request) {
	select {
	case s.d.stops <- struct{}{}:
	default: // already asked
	}
	writeJSON(w, http.StatusOK, api.ReloadResult{OK: true})
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

// State is the running state for `xlb list` (see status.Build).
func (d *Daemon) State() (api.State, error) {
	d.mu.Lock()
	cfg, vs := d.cfg, d.vrrp
	d.mu.Unlock()
	st, err := status.Build(cfg, d.bal.State(), d.dp)
	if err != nil {
		return api.State{}, err
	}
	st.Config = d.opts.ConfigPath
	d.ovr.Mark(&st)
	st.VRRP = vs.State()
	return st, nil
}
