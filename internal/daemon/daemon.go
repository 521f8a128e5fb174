// Package daemon wires xlb together: it loads the configuration, drives
// the balancer and the data path, resolves backend MACs, serves the runtime
// API, and reloads on request. It holds no protocol or map logic of its
// own.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/config"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/ha"
	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/neigh"
	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
)

// Options configure a daemon.
type Options struct {
	ConfigPath string
	// Format is "auto", "keepalived" or "yaml".
	Format    string
	Interface string
	XDPMode   datapath.Mode
	PinDir    string
	Socket    string
	// FlowTableSize is the flow table's capacity (the data path's default
	// if zero).
	FlowTableSize uint32
	Log           *slog.Logger
}

// resolveTimeout bounds one MAC resolution; an unresolved backend is
// retried every retryInterval and serves no traffic meanwhile.
const (
	resolveTimeout = 1 * time.Second
	retryInterval  = 2 * time.Second
)

// Daemon is a running xlb.
type Daemon struct {
	opts Options
	log  *slog.Logger
	dp   *datapath.Datapath
	bal  *balancer.Balancer
	res  *neigh.Resolver
	hc   *healthcheck.Manager

	mu   sync.Mutex // guards cfg, macs and saved, and serialises applies
	cfg  *service.Config
	macs map[netip.Addr]net.HardwareAddr
	// saved is what the ids file holds: most applies (health, MAC
	// changes) give out no id, and then nothing is written.
	saved balancer.IDs
	// vrrp is the running VRRP set; only Run's goroutine, which also
	// serves reloads, replaces it.
	vrrp *ha.Set
	// quorum is what the last apply served of each service's quorum.
	quorum quorums
}

// Run serves until ctx ends or a fatal error: it loads the configuration,
// attaches the data path, and applies every change. reload delivers reload
// requests (SIGHUP); each answer goes back on the request's channel.
// On return the program is detached and its pins removed.
func Run(ctx context.Context, opts Options, reload <-chan chan error) (err error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.PinDir == "" {
		opts.PinDir = datapath.DefaultPinDir
	}
	if opts.Socket == "" {
		opts.Socket = api.DefaultSocket
	}
	// Before anything else: a second daemon on the same socket would
	// otherwise replace the first one's pins and saved ids.
	if c, err := net.Dial("unix", opts.Socket); err == nil {
		c.Close()
		return fmt.Errorf("api socket %s: another xlb daemon is listening", opts.Socket)
	}
	d := &Daemon{opts: opts, log: opts.Log, macs: map[netip.Addr]net.HardwareAddr{}}

	cfg, err := d.loadConfig()
	if err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", opts.Interface, err)
	}
	// A run that died without cleaning up left its flow table pinned (its
	// program may still be forwarding with it) and its backend ids beside
	// the socket: with both, established connections keep their real
	// servers across the restart, whatever the tables say now.
	ids, err := readIDs(d.idsPath())
	if err != nil {
		d.log.Warn("backend ids of an earlier run unusable; starting with an empty flow table", "err", err)
	}
	d.dp, err = datapath.Load(datapath.Options{
		PinDir:        opts.PinDir,
		MAC:           ifi.HardwareAddr,
		FlowTableSize: opts.FlowTableSize,
		Fresh:         true,
		KeepFlows:     ids != nil,
	})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, d.dp.Unpin(), d.dp.Close(), removeIDs(d.idsPath()))
	}()
	if ids == nil {
		d.bal = balancer.New(d.dp)
	} else {
		if d.bal, err = balancer.NewFrom(d.dp, *ids); err != nil {
			return fmt.Errorf("%s: %w", d.idsPath(), err)
		}
		d.saved = *ids
		d.log.Info("adopted the flow table and backend ids of an earlier run", "backends", len(ids.Backends))
	}
	d.res, err = neigh.New(opts.Interface, d.log)
	if err != nil {
		return err
	}
	defer d.res.Close()

	d.hc = healthcheck.NewManager(healthcheck.Options{Log: d.log, Damping: cfg.Global.FlapDamping})
	defer d.hc.Close()

	// The checks first: a backend whose check starts down (alpha) must
	// not take traffic from the first table on.
	d.hc.Update(healthcheck.TargetsOf(cfg.Services))
	d.resolveAll(ctx, cfg)
	if err := d.apply(cfg); err != nil {
		return err
	}
	// Attach once the tables are full: a program an earlier run left
	// attached (see datapath.Attach) keeps forwarding until this one
	// replaces it, and this one must not start with empty tables.
	if err := d.dp.Attach(opts.Interface, opts.XDPMode); err != nil {
		return err
	}
	d.log.Info("attached", "interface", opts.Interface, "mode", opts.XDPMode, "pins", opts.PinDir)
	d.cfg = cfg

	// VRRP stops before the program detaches (defers run last first):
	// a stopping master hands the VIP over while still forwarding.
	if d.vrrp, err = ha.Prepare(cfg, d.opts.Interface, d.log); err != nil {
		return err
	}
	d.vrrp.Start(nil)
	defer func() { d.vrrp.Stop() }()

	srv, err := d.serveAPI()
	if err != nil {
		return err
	}
	defer srv.close()

	changes := d.res.Watch(ctx)
	retry := time.NewTicker(retryInterval)
	defer retry.Stop()
	d.log.Info("serving", "services", len(cfg.Services), "socket", opts.Socket)
	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping")
			d.omega()
			return nil
		case done := <-reload:
			done <- d.Reload(ctx)
		case done := <-srv.reloads:
			done <- d.Reload(ctx)
		case ch, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			d.neighbourChanged(ch)
		case <-retry.C:
			d.retryUnresolved(ctx)
		case ev := <-d.hc.Events():
			d.healthChanged(ev)
		}
	}
}

// loadConfig reads and validates the configuration file; warnings are
// logged, errors returned with every file:line.
func (d *Daemon) loadConfig() (*service.Config, error) {
	cfg, warnings, err := config.Load(d.opts.ConfigPath, d.opts.Format)
	for _, w := range warnings {
		d.log.Warn(w.String())
	}
	if err != nil {
		return nil, err
	}
	if err := checkScripts(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkScripts refuses a configuration whose MISC_CHECK, notify_up,
// notify_down, quorum_up or quorum_down scripts fail keepalived's script
// security, with the place of each: serving it would take those backends
// down at their first probe, or skip their scripts, for a reason only the
// log would tell.
func checkScripts(cfg *service.Config) error {
	var errs []error
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			for _, c := range b.Checks {
				if err := healthcheck.CheckScriptSecurity(c); err != nil {
					errs = append(errs, &service.Error{Pos: c.Source, Err: err,
						Msg: fmt.Sprintf("service %s: backend %s: %v", s.Key(), b.AddrPort(), err)})
				}
			}
			for _, n := range []struct{ kw, line string }{{"notify_up", b.NotifyUp}, {"notify_down", b.NotifyDown}} {
				if n.line == "" {
					continue
				}
				if err := script.Check(n.line, b.Source.File); err != nil {
					errs = append(errs, &service.Error{Pos: b.Source, Err: err,
						Msg: fmt.Sprintf("service %s: backend %s: %s %q: %v", s.Key(), b.AddrPort(), n.kw, n.line, err)})
				}
			}
		}
		for _, n := range []struct{ kw, line string }{{"quorum_up", s.QuorumUp}, {"quorum_down", s.QuorumDown}} {
			if n.line == "" {
				continue
			}
			if err := script.Check(n.line, s.Source.File); err != nil {
				errs = append(errs, &service.Error{Pos: s.Source, Err: err,
					Msg: fmt.Sprintf("service %s: %s %q: %v", s.Key(), n.kw, n.line, err)})
			}
		}
	}
	return errors.Join(errs...)
}

// Reload re-reads the configuration and serves it. A configuration that
// does not load, or that the data path rejects, changes nothing: the old
// one keeps serving and its flows keep their backends.
func (d *Daemon) Reload(ctx context.Context) error {
	cfg, err := d.loadConfig()
	if err != nil {
		d.log.Error("reload rejected, old configuration still served", "err", err)
		return err
	}
	// Changed VRRP settings get a new set, built and checked before
	// anything changes (see ha.Set.Start for how it takes over).
	d.mu.Lock()
	vrrpChanged := ha.Changed(d.cfg, cfg)
	d.mu.Unlock()
	var next *ha.Set
	if vrrpChanged {
		if next, err = ha.Prepare(cfg, d.opts.Interface, d.log); err != nil {
			d.log.Error("reload rejected, old configuration still served", "err", err)
			return err
		}
	}
	d.resolveAll(ctx, cfg)
	d.mu.Lock()
	if err := d.applyLocked(cfg); err != nil {
		d.mu.Unlock()
		if next != nil {
			next.Abort()
		}
		d.log.Error("reload rejected, old configuration still served", "err", err)
		return err
	}
	prev := d.vrrp
	if next != nil {
		next.Start(prev)
		d.vrrp = next
	}
	d.cfg = cfg
	d.hc.SetDamping(cfg.Global.FlapDamping)
	d.hc.Update(healthcheck.TargetsOf(cfg.Services))
	d.mu.Unlock()
	d.log.Info("reloaded", "services", len(cfg.Services), "vrrp_changed", vrrpChanged)
	if next != nil && prev != nil {
		// Instances the new configuration dropped release gracefully.
		prev.Wait()
	}
	return nil
}

func (d *Daemon) apply(cfg *service.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applyLocked(cfg)
}

func (d *Daemon) applyLocked(cfg *service.Config) error {
	var h health = alwaysUp{}
	if d.hc != nil {
		h = d.hc
	}
	q, changed := nextQuorums(cfg, h, d.quorum)
	if err := d.bal.Apply(desired(cfg, d.macs, h, q)); err != nil {
		return err
	}
	d.quorum = q
	for _, s := range changed {
		d.quorumChanged(s, q[s.Key()])
	}
	ids := d.bal.IDs()
	if ids.Next == d.saved.Next && slices.Equal(ids.Backends, d.saved.Backends) {
		return nil
	}
	if err := writeIDs(d.idsPath(), ids); err != nil {
		// Serving goes on; only a crash restart would lose flow affinity.
		d.log.Warn("cannot save backend ids", "err", err)
		return nil
	}
	d.saved = ids
	return nil
}

// backendAddrs lists the distinct real-server addresses of cfg.
func backendAddrs(cfg *service.Config) []netip.Addr {
	var out []netip.Addr
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			out = append(out, b.Addr)
		}
		if s.SorryServer != nil {
			out = append(out, s.SorryServer.Addr)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// resolveAll resolves, in parallel, every backend of cfg whose MAC is not
// known yet.
func (d *Daemon) resolveAll(ctx context.Context, cfg *service.Config) {
	var todo []netip.Addr
	d.mu.Lock()
	for _, a := range backendAddrs(cfg) {
		if d.macs[a] == nil {
			todo = append(todo, a)
		}
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	found := map[netip.Addr]net.HardwareAddr{}
	for _, a := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
			defer cancel()
			mac, err := d.res.Resolve(rctx, a)
			if err != nil {
				d.log.Warn("backend unresolved: it takes no traffic until its MAC is known", "backend", a, "err", err)
				return
			}
			mu.Lock()
			found[a] = mac
			mu.Unlock()
		}()
	}
	wg.Wait()
	d.mu.Lock()
	for a, m := range found {
		d.macs[a] = m
	}
	d.mu.Unlock()
}

// retryUnresolved resolves backends still without a MAC and serves those
// that now have one.
func (d *Daemon) retryUnresolved(ctx context.Context) {
	d.mu.Lock()
	cfg := d.cfg
	missing := 0
	for _, a := range backendAddrs(cfg) {
		if d.macs[a] == nil {
			missing++
		}
	}
	d.mu.Unlock()
	if missing == 0 {
		return
	}
	d.resolveAll(ctx, cfg)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after resolving backends", "err", err)
	}
}

// neighbourChanged follows a backend whose MAC changed (or went away): its
// flows follow it to the new MAC at once.
func (d *Daemon) neighbourChanged(ch neigh.Change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !slices.Contains(backendAddrs(d.cfg), ch.IP) {
		return
	}
	old := d.macs[ch.IP]
	if ch.MAC == nil || slices.Equal(old, ch.MAC) {
		// A neighbour entry that expires says nothing about the backend;
		// keep forwarding to the MAC we know.
		return
	}
	d.macs[ch.IP] = ch.MAC
	d.log.Info("backend MAC changed", "backend", ch.IP, "old", net.HardwareAddr(old).String(), "new", ch.MAC.String())
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after MAC change", "backend", ch.IP, "err", err)
	}
}

// healthChanged serves a backend's new state: one transaction per event,
// as keepalived changes IPVS one destination at a time.
func (d *Daemon) healthChanged(ev healthcheck.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	state := "down"
	if ev.Up {
		state = "up"
	}
	d.log.Info("backend "+state, "service", ev.Service, "backend", ev.Backend, "reason", ev.Reason)
	if !ev.Up {
		d.warnIfAllDown(ev.Service)
	}
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after health change", "backend", ev.Backend, "err", err)
	}
	if ev.Changed {
		d.notifyBackend(ev)
	}
}

// quorumChanged logs a service's lost or regained quorum and starts its
// quorum_down or quorum_up script.
func (d *Daemon) quorumChanged(s service.Service, held bool) {
	kw, line := "quorum_down", s.QuorumDown
	if held {
		kw, line = "quorum_up", s.QuorumUp
		d.log.Info("quorum gained", "service", s.Key())
	} else {
		d.log.Warn("quorum lost", "service", s.Key(), "quorum", max(s.Quorum, 1), "sorry_server", s.SorryServer != nil)
	}
	startScript(line, s.QuorumUser, d.log.With("service", s.Key(), "script", kw), "quorum script failed")
}

// startScript starts a notify_*, quorum_* script line as user in the
// background (script.Start) and returns the channel closed when it has
// ended; an empty line, or one that does not split (checkScripts refused
// those at load), starts nothing.
func startScript(line, user string, log *slog.Logger, msg string) <-chan struct{} {
	argv, err := script.Split(line)
	if err != nil || len(argv) == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return script.Start(script.Command{Args: argv, User: user}, notifyTimeout, log, msg)
}

// omega runs, for each service with omega, the notify_down scripts of its
// backends still up and its quorum_down if it holds the quorum, as
// keepalived does at shutdown, and waits for them (each bounded by
// notifyTimeout): the process is about to exit.
func (d *Daemon) omega() {
	var ended []<-chan struct{}
	d.mu.Lock()
	for _, s := range d.cfg.Services {
		if !s.Omega {
			continue
		}
		for _, b := range s.Backends {
			if d.hc.Up(s.Key(), b.AddrPort()) {
				log := d.log.With("service", s.Key(), "backend", b.AddrPort(), "script", "notify_down")
				ended = append(ended, startScript(b.NotifyDown, b.NotifyUser, log, "omega script failed"))
			}
		}
		if d.quorum[s.Key()] {
			log := d.log.With("service", s.Key(), "script", "quorum_down")
			ended = append(ended, startScript(s.QuorumDown, s.QuorumUser, log, "omega script failed"))
		}
	}
	d.mu.Unlock()
	// Waited for without the lock: the API still answers meanwhile.
	for _, done := range ended {
		<-done
	}
}

// notifyTimeout bounds a real server's notify_up or notify_down script.
const notifyTimeout = 30 * time.Second

// notifyBackend starts the backend's notify_up or notify_down script, as
// keepalived does when a checker changes its state, without waiting for it.
func (d *Daemon) notifyBackend(ev healthcheck.Event) {
	i := slices.IndexFunc(d.cfg.Services, func(s service.Service) bool { return s.Key() == ev.Service })
	if i < 0 {
		return
	}
	s := d.cfg.Services[i]
	j := slices.IndexFunc(s.Backends, func(b service.Backend) bool { return b.AddrPort() == ev.Backend })
	if j < 0 {
		return
	}
	b := s.Backends[j]
	kw, line := "notify_down", b.NotifyDown
	if ev.Up {
		kw, line = "notify_up", b.NotifyUp
	}
	startScript(line, b.NotifyUser, d.log.With("service", ev.Service, "backend", ev.Backend, "script", kw), "notify script failed")
}

// warnIfAllDown says loudly that no backend of the service is up any more.
func (d *Daemon) warnIfAllDown(key service.ServiceKey) {
	i := slices.IndexFunc(d.cfg.Services, func(s service.Service) bool { return s.Key() == key })
	if i < 0 || anyUp(d.cfg.Services[i], d.hc) {
		return
	}
	if ss := d.cfg.Services[i].SorryServer; ss != nil {
		d.log.Warn("every backend is down: new connections go to the sorry server", "service", key, "sorry_server", ss.Addr)
		return
	}
	d.log.Error("every backend is down and there is no sorry_server: keeping the last table so the VIP still answers", "service", key)
}

// socketDir creates the socket's directory, root only.
func socketDir(path string) error {
	return os.MkdirAll(filepath.Dir(path), 0o700)
}
