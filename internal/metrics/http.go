package metrics

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/xlb-project/xlb/internal/api"
)

// web is the status page: every asset is embedded, so the page works on a
// balancer that reaches no CDN.
//
//go:embed web
var web embed.FS

// Status is the document the status page polls every second.
type Status struct {
	State  api.State `json:"state"`
	Health []Health  `json:"health"`
	Events []Event   `json:"events"`
}

// Health is one backend's health.
type Health struct {
	Service string `json:"service"`
	Backend string `json:"backend"`
	Up      bool   `json:"up"`
}

// Handler serves /metrics, the status page on / and its document on
// /status.json.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", m.serveMetrics)
	mux.HandleFunc("GET /status.json", m.status)
	sub, _ := fs.Sub(web, "web")
	mux.Handle("GET /", http.FileServerFS(sub))
	return mux
}

// serveMetrics answers a scrape in the text format, which every
// Prometheus reads: the registry's families through expfmt, then those
// of the running state through the allocation-free writer (see family).
func (m *Metrics) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	mfs, err := m.reg.Gather()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	own, err := m.collect()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	_, _ = w.Write(buf.Bytes())
	// One family at a time through one reused buffer: a scrape of 1,000
	// services x 10 backends is 8 MB, which is not worth holding.
	var b []byte
	for _, f := range own {
		b = f.appendText(b[:0])
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

func (m *Metrics) status(w http.ResponseWriter, _ *http.Request) {
	cfg := m.config()
	if cfg == nil {
		http.Error(w, errStarting.Error(), http.StatusServiceUnavailable)
		return
	}
	st, err := m.src.State()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := Status{State: st, Events: m.Events(), Health: []Health{}}
	if m.src.Health != nil {
		for _, s := range cfg.Services {
			for _, b := range s.Backends {
				out.Health = append(out.Health, Health{Service: s.Key().String(), Backend: b.AddrPort().String(), Up: m.src.Health.Up(s.Key(), b.AddrPort())})
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// Serve listens on addr and serves Handler until stop is called; an empty
// addr serves nothing.
func (m *Metrics) Serve(addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics and status page", "address", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
