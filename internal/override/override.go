// Package override keeps the operator's runtime overrides of real servers
// (a weight, a drain) that apply on top of the configuration without
// editing it, as `ipvsadm -e` does on IPVS. They persist in a small JSON
// file in the state directory, so they survive a daemon restart; a reload
// that removes a server drops its override.
package override

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/service"
)

// DefaultStateDir is where `xlb run` keeps its state unless told otherwise.
const DefaultStateDir = "/var/lib/xlb"

// FileName is the overrides file in the state directory.
const FileName = "overrides.json"

// fileVersion is the layout of the file; a file of another version is
// refused rather than misread.
const fileVersion = 1

type file struct {
	Version   int            `json:"version"`
	Overrides []api.Override `json:"overrides"`
}

// key names a real server: an address, with port 0 for every port of it.
type key = netip.AddrPort

type entry struct {
	weight  *uint32
	drained bool
}

// Store holds the overrides in force and persists every change. It is
// safe for concurrent use.
type Store struct {
	path    string
	log     *slog.Logger
	mu      sync.Mutex
	entries map[key]entry
}

// Open reads the overrides persisted in dir (none if the file does not
// exist yet). An empty dir keeps them in memory only. log (nil: none)
// hears about every change.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{entries: map[key]entry{}, log: log}
	if dir == "" {
		return s, nil
	}
	s.path = filepath.Join(dir, FileName)
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("overrides: %w", err)
	}
	var f file
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("overrides %s: %w", s.path, err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("overrides %s: version %d, this build reads %d", s.path, f.Version, fileVersion)
	}
	for _, o := range f.Overrides {
		k, err := parseServer(o.Server)
		if err != nil {
			return nil, fmt.Errorf("overrides %s: %w", s.path, err)
		}
		s.entries[k] = entry{weight: o.Weight, drained: o.Drained}
	}
	return s, nil
}

// parseServer reads "addr" or "addr:port".
func parseServer(s string) (key, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return key{}, fmt.Errorf("server %s: port 0: name the address alone for every port", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return key{}, fmt.Errorf("server %q: not an address or address:port", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
}

// format is the server as the operator names it.
func format(k key) string {
	if k.Port() == 0 {
		return k.Addr().String()
	}
	return k.String()
}

// Weight is the weight be serves svc with: w (the configured or
// health-check given weight) unless an override replaces it. An override
// of be's address:port wins over one of its address. It is what
// reconcile.Overrides asks.
func (s *Store) Weight(_ service.ServiceKey, be netip.AddrPort, w int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	exact, byAddr := s.entries[netip.AddrPortFrom(be.Addr().Unmap(), be.Port())], s.entries[netip.AddrPortFrom(be.Addr().Unmap(), 0)]
	switch {
	case exact.drained || byAddr.drained:
		return 0
	case exact.weight != nil:
		return int(*exact.weight)
	case byAddr.weight != nil:
		return int(*byAddr.weight)
	}
	return w
}

// Describe is be's override as `xlb list` marks it, "" for none.
func (s *Store) Describe(be netip.AddrPort) string {
	switch w := s.Weight(service.ServiceKey{}, be, -1); w {
	case -1:
		return ""
	case 0:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.entries[netip.AddrPortFrom(be.Addr().Unmap(), be.Port())].drained || s.entries[netip.AddrPortFrom(be.Addr().Unmap(), 0)].drained {
			return "drained"
		}
		return "weight 0"
	default:
		return "weight " + strconv.Itoa(w)
	}
}

// Mark sets the Override of every backend in st.
func (s *Store) Mark(st *api.State) {
	for i := range st.Services {
		for j := range st.Services[i].Backends {
			b := &st.Services[i].Backends[j]
			a, err := netip.ParseAddr(b.Addr)
			if err != nil || b.Sorry {
				continue
			}
			b.Override = s.Describe(netip.AddrPortFrom(a, b.Port))
		}
	}
}

// List returns the overrides in force, by server.
func (s *Store) List() []api.Override {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked()
}

func (s *Store) listLocked() []api.Override {
	keys := make([]key, 0, len(s.entries))
	for k := range s.entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return a.Compare(b) })
	out := make([]api.Override, 0, len(keys))
	for _, k := range keys {
		e := s.entries[k]
		out = append(out, api.Override{Server: format(k), Weight: e.weight, Drained: e.drained})
	}
	return out
}

// Change applies req if cfg serves the server it names, then calls apply
// (which serves cfg with the overrides now in force) and persists the
// result. Bad input, a failed apply or a failed write changes nothing:
// the previous overrides are back in force (and apply is called again
// to serve them when it was the write that failed).
func (s *Store) Change(req api.OverrideRequest, cfg *service.Config, apply func() error) error {
	k, err := parseServer(req.Server)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if !serves(cfg, k) {
		return fmt.Errorf("server: %s is not a real server of any virtual server", req.Server)
	}
	s.mu.Lock()
	prev := maps.Clone(s.entries)
	e := s.entries[k]
	switch req.Action {
	case api.ActionWeight:
		if req.Weight != nil && *req.Weight > service.MaxWeight {
			s.mu.Unlock()
			return fmt.Errorf("weight: %d is above %d", *req.Weight, service.MaxWeight)
		}
		e.weight = req.Weight
	case api.ActionDrain:
		e.drained = true
	case api.ActionUndrain:
		e.drained = false
	default:
		s.mu.Unlock()
		return fmt.Errorf("action: %q is not %s, %s or %s", req.Action, api.ActionWeight, api.ActionDrain, api.ActionUndrain)
	}
	if e.weight == nil && !e.drained {
		delete(s.entries, k)
	} else {
		s.entries[k] = e
	}
	s.mu.Unlock()
	// apply reads the overrides through Weight: the lock is not held.
	if err := apply(); err != nil {
		s.restore(prev)
		return fmt.Errorf("server %s: %w", req.Server, err)
	}
	if err := s.save(); err != nil {
		s.restore(prev)
		return errors.Join(err, apply())
	}
	s.log.Info("override", "server", req.Server, "action", req.Action, "now", s.Describe(k))
	return nil
}

func (s *Store) restore(prev map[key]entry) {
	s.mu.Lock()
	s.entries = prev
	s.mu.Unlock()
}

// serves reports whether some service of cfg has a real server k names
// (the sorry server is no real server: it serves only when they fail).
func serves(cfg *service.Config, k key) bool {
	if cfg == nil {
		return false
	}
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			if b.Addr.Unmap() == k.Addr() && (k.Port() == 0 || k.Port() == b.Port) {
				return true
			}
		}
	}
	return false
}

// Prune drops the overrides of servers cfg no longer serves (a reload
// that removed them) and persists the rest; it returns the servers
// dropped.
func (s *Store) Prune(cfg *service.Config) ([]string, error) {
	s.mu.Lock()
	var dropped []string
	for k := range s.entries {
		if !serves(cfg, k) {
			delete(s.entries, k)
			dropped = append(dropped, format(k))
		}
	}
	s.mu.Unlock()
	slices.Sort(dropped)
	if len(dropped) == 0 {
		return nil, nil
	}
	err := s.save()
	s.log.Info("overrides of servers the configuration no longer has dropped", "servers", dropped, "err", err)
	return dropped, err
}

// Handler serves api.PathOverride. locked runs its function with the
// daemon's applies held off, giving it the configuration served and a
// function that serves it anew with the overrides then in force.
func (s *Store) Handler(locked func(func(cfg *service.Config, apply func() error) error) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.OverrideRequest
		err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req)
		if err != nil {
			err = fmt.Errorf("request: %w", err)
		} else {
			err = locked(func(cfg *service.Config, apply func() error) error { return s.Change(req, cfg, apply) })
		}
		res, code := api.OverrideResult{OK: err == nil, Overrides: s.List()}, http.StatusOK
		if err != nil {
			res.Error, code = err.Error(), http.StatusUnprocessableEntity
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(res)
	}
}

// save writes the overrides atomically: a temporary file, fsynced, renamed
// over the old one, and the directory fsynced, so that a crash leaves the
// old file or the new one, never a torn one.
func (s *Store) save() error {
	if s.path == "" {
		return nil
	}
	s.mu.Lock()
	raw, err := json.MarshalIndent(file{Version: fileVersion, Overrides: s.listLocked()}, "", "  ")
	s.mu.Unlock()
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("overrides: %w", err)
	}
	tmp, err := os.CreateTemp(dir, FileName+".*")
	if err != nil {
		return fmt.Errorf("overrides: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(raw, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("overrides %s: %w", s.path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("overrides: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("overrides: sync %s: %w", dir, err)
	}
	return nil
}
