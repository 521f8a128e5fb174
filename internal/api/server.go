package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Handlers are the daemon's side of the runtime API.
type Handlers struct {
	// State is what `xlb list` shows.
	State func() (State, error)
	// Reload serves the configuration file anew; it returns every
	// problem of a rejected file, and the daemon keeps the old one.
	Reload func(context.Context) error
	// Stop asks the daemon to remove its data path and exit; the client
	// then waits for the socket to go, which the daemon closes last.
	Stop func()
	// DrainBGP takes the VIPs out of BGP gracefully (true) or back.
	DrainBGP func(drain bool) error
	// Override serves PathOverride: runtime weights and drains.
	Override http.Handler
}

// Server serves the runtime API on a unix socket that only root can open
// (mode 0600 in a 0700 directory).
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen opens the socket at path; Serve starts answering on it, and until
// then a client's connection waits in the backlog. A socket another daemon
// answers on is refused, not taken over; one a dead daemon left is
// replaced.
func Listen(path string, h Handlers) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("api socket %s: another xlb daemon is listening", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathState, func(w http.ResponseWriter, _ *http.Request) {
		st, err := h.State()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST "+PathReload, func(w http.ResponseWriter, r *http.Request) {
		answer(w, h.Reload(r.Context()))
	})
	mux.HandleFunc("POST "+PathStop, func(w http.ResponseWriter, _ *http.Request) {
		h.Stop()
		answer(w, nil)
	})
	drain := func(w http.ResponseWriter, r *http.Request) { answer(w, h.DrainBGP(r.Method == http.MethodPost)) }
	mux.HandleFunc("POST "+PathBGPDrain, drain)
	mux.HandleFunc("DELETE "+PathBGPDrain, drain)
	if h.Override != nil {
		mux.Handle("POST "+PathOverride, h.Override)
	}
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Serve answers on the socket, in the background.
func (s *Server) Serve() {
	go func() { _ = s.srv.Serve(s.ln) }()
}

// Close stops answering and removes the socket. Answers being written
// are finished first: `xlb stop`'s own, which a daemon that stops fast
// would otherwise cut off (the client then reads EOF, not the answer). A
// handler that does not finish within a second is cut off all the same.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	_ = os.Remove(s.ln.Addr().String())
}

// answer writes a ReloadResult: OK, or err's lines.
func answer(w http.ResponseWriter, err error) {
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, ReloadResult{Errors: strings.Split(err.Error(), "\n")})
		return
	}
	writeJSON(w, http.StatusOK, ReloadResult{OK: true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
