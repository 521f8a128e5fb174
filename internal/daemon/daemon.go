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
	"path/filepath"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/bgp"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/ha"
	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/ifwatch"
	"github.com/xlb-project/xlb/internal/metrics"
	"github.com/xlb-project/xlb/internal/neigh"
	"github.com/xlb-project/xlb/internal/notify"
	"github.com/xlb-project/xlb/internal/override"
	"github.com/xlb-project/xlb/internal/preflight"
	"github.com/xlb-project/xlb/internal/reconcile"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/slowstart"
	"github.com/xlb-project/xlb/internal/srcaddr"
)

// Options configure a daemon.
type Options struct {
	ConfigPath string
	// Format is "auto", "keepalived" or "yaml".
	Format string
	// Interfaces are those the program is attached to: the first is where
	// clients arrive (and VRRP runs), the others reach real servers on
	// other segments (two-arm). One at least.
	Interfaces []string
	XDPMode    datapath.Mode
	PinDir     string
	Socket     string
	// FlowTableSize is the flow table's capacity (the data path's default
	// if zero).
	FlowTableSize uint32
	// Timeouts override, field by field, the flow lifetimes of the
	// configuration (`xlb run --timeouts`).
	Timeouts service.Timeouts
	Log      *slog.Logger
	// Metrics: /metrics and the status page ("": off); StateDir: the overrides ("": memory).
	Metrics, StateDir string
	Build             metrics.Build
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
	res  *neigh.Set
	macs *neigh.Cache
	// srcs picks tunnels' outer sources (never a VIP).
	srcs srcaddr.Picker
	hc   *healthcheck.Manager
	srv  *api.Server

	ovr     *override.Store
	ramp    *slowstart.Ramps
	ops     *metrics.Metrics
	opsStop func() // stops the metrics server
	// scripts runs the real servers' and services' notify scripts.
	scripts notify.Runner

	mu  sync.Mutex // guards cfg, rec, vrrp and stopping, and serialises applies
	cfg *service.Config
	rec *reconcile.Reconciler
	// vrrp is the running VRRP set; a reload replaces it.
	vrrp *ha.Set
	// bgp announces the VIPs while they can be served (package bgp).
	bgp *bgp.Node
	// stopping is set once shutdown began: a reload in flight must not
	// start VRRP instances then.
	stopping bool
	// iface is each interface as the program was last fitted to it.
	iface map[string]ifwatch.State
	// idHold is the longest backend id hold given to the balancer.
	idHold time.Duration
	// sweeper sweeps the flow table and counts connections.
	sweeper *datapath.Sweeper

	// reloading serialises reloads: a reload holds it until the VRRP
	// instances it replaced have finished releasing.
	reloading chan struct{}
	stops     chan struct{}
}

// Run starts xlb and serves until ctx ends or `xlb stop` asks it to; a
// start that fails returns its error having changed nothing a running data
// path depends on. When ctx ends (SIGTERM: a restart, an upgrade, a stop by
// the service manager) the data path is left attached and pinned, and
// forwards with its last tables until the next run takes it over, as IPVS
// forwards while keepalived restarts. `xlb stop` removes it. reload
// delivers reload requests (SIGHUP); each answer goes back on the
// request's channel.
func Run(ctx context.Context, opts Options, reload <-chan chan error) error {
	d, err := start(ctx, opts)
	if err != nil {
		return err
	}
	return d.shutdown(d.serve(ctx, reload))
}

// start loads the configuration and prepares every part before it changes
// anything on the host: the data path is attached and pinned, and VRRP
// takes its addresses, only once everything else has started.
func start(ctx context.Context, opts Options) (_ *Daemon, err error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.PinDir == "" {
		opts.PinDir = datapath.DefaultPinDir
	}
	if opts.Socket == "" {
		opts.Socket = api.DefaultSocket
	}
	d := &Daemon{opts: opts, log: opts.Log, scripts: notify.Runner{Log: opts.Log},
		reloading: make(chan struct{}, 1), stops: make(chan struct{}, 1)}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	cfg, err := d.loadConfig()
	if err != nil {
		return nil, err
	}
	if d.ovr, err = override.Open(opts.StateDir, d.log); err != nil {
		return nil, err
	}
	if len(opts.Interfaces) == 0 {
		return nil, errors.New("no interface to attach to")
	}
	ifi, err := net.InterfaceByName(opts.Interfaces[0])
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", opts.Interfaces[0], err)
	}
	// A run that died or was stopped without `xlb stop` left its program
	// forwarding with its flow table and the record of its backend ids
	// pinned: Load takes both over, so established connections keep their
	// real servers whatever the tables say now. It locks the pin directory
	// first (a second daemon stops here) and changes nothing there.
	d.dp, err = datapath.Load(datapath.Options{
		PinDir:        opts.PinDir,
		MAC:           ifi.HardwareAddr,
		FlowTableSize: opts.FlowTableSize,
		KeepFlows:     true,
		LegacyIDs:     filepath.Join(filepath.Dir(opts.Socket), "backend-ids.json"),
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.dp.Close() })
	ids := d.dp.IDs()
	if d.bal, err = balancer.NewFrom(d.dp, ids); err != nil {
		return nil, fmt.Errorf("pin directory %s: %w", opts.PinDir, err)
	}
	d.rec = reconcile.New(d.bal)
	if err := d.setTimeouts(cfg); err != nil {
		return nil, err
	}
	d.ramp = slowstart.New(d.ovr, d.locked)
	d.rec.SetOverrides(d.ramp)
	if d.res, err = neigh.NewSet(opts.Interfaces, d.log); err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.res.Close() })
	if len(opts.Interfaces) > 1 {
		d.rec.SetLinks(d.res.Ifindex)
	}
	d.macs = neigh.NewCache(d.res, resolveTimeout, d.log)
	d.hc = healthcheck.NewManager(healthcheck.Options{Log: d.log, Damping: cfg.Global.FlapDamping, OnProbe: func(p healthcheck.ProbeResult) { d.ops.ObserveProbe(p) }})
	undo = append(undo, d.hc.Close)
	d.hc.SetVIPs(cfg.VIPs())
	d.ops = metrics.New(metrics.Source{State: d.State, Health: d.hc, Datapath: d.dp}, opts.Build, true)
	// The checks first: a backend whose check starts down (alpha) must
	// not take traffic from the first table on.
	d.hc.Update(healthcheck.TargetsOf(cfg.Services))
	if d.vrrp, err = ha.Prepare(cfg, opts.Interfaces[0], d.log); err != nil {
		return nil, err
	}
	undo = append(undo, d.vrrp.Abort)
	d.bgp = bgp.Prepare(cfg, d.log, bgp.Options{})
	undo = append(undo, d.bgp.Abort)
	if d.srv, err = api.Listen(opts.Socket, api.Handlers{State: d.State, Reload: d.Reload, Stop: d.askStop,
		DrainBGP: d.bgp.Drain, Override: d.ovr.Handler(d.locked)}); err != nil {
		return nil, err
	}
	undo = append(undo, d.srv.Close)
	if d.opsStop, err = d.ops.Serve(opts.Metrics, d.log); err != nil {
		return nil, err
	}
	undo = append(undo, d.opsStop)
	d.macs.Resolve(ctx, neighbours(cfg))
	if err := d.applyWith(cfg, d.hc); err != nil { // nothing else runs yet
		return nil, err
	}
	d.cfg = cfg
	_, _ = d.ovr.Prune(cfg) // it logs what it drops
	d.ops.Loaded(cfg, nil)
	if len(ids.Backends) > 0 {
		d.log.Info("adopted the flow table and backend ids of an earlier run", "backends", len(ids.Backends))
	}

	// The tables are full: the new program takes over from the earlier
	// run's in its pinned link with no gap, then the pins follow.
	if err := d.dp.Attach(opts.Interfaces[0], opts.XDPMode, opts.Interfaces[1:]...); err != nil {
		return nil, err
	}
	if err := d.dp.Pin(); err != nil {
		// Attached but not pinned: this run forwards, and `xlb stop` can
		// still remove it; a crash now would leave the next run the
		// earlier run's flow table.
		d.log.Error("pin the maps", "err", err)
	}
	d.iface = map[string]ifwatch.State{}
	for name, index := range d.dp.Interfaces() {
		if i, err := net.InterfaceByName(name); err == nil {
			d.iface[name] = ifwatch.State{Name: name, Index: index, MAC: i.HardwareAddr}
		}
	}
	d.sweeper = d.dp.StartSweeper(context.WithoutCancel(ctx), d.log) // stopped in shutdown
	d.log.Info("attached", "interfaces", opts.Interfaces, "mode", opts.XDPMode, "pins", opts.PinDir)
	d.vrrp.Start(nil)
	if err := d.bgp.Start(); err != nil {
		d.log.Error("bgp: the VIPs are not announced", "err", err)
	}
	d.srv.Serve()
	d.log.Info("serving", "services", len(cfg.Services), "socket", opts.Socket)
	return d, nil
}

// serve handles events until ctx ends or a stop request comes, and
// reports which: purge is true for `xlb stop`. Reloads run beside the
// loop, so that health events and MAC changes apply while a reload waits.
func (d *Daemon) serve(ctx context.Context, reload <-chan chan error) (purge bool) {
	changes := d.res.Watch(ctx)
	ifaces, err := ifwatch.WatchEach(ctx, d.opts.Interfaces, d.log)
	if err != nil {
		d.log.Error("the program will not follow changes of its interface", "err", err)
	}
	retry := time.NewTicker(retryInterval)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-d.stops:
			return true
		case done := <-reload:
			go func() { done <- d.Reload(ctx) }()
		case ch, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			d.neighbourChanged(ch)
		case st, ok := <-ifaces:
			if !ok {
				ifaces = nil
				continue
			}
			d.interfaceChanged(st)
		case <-retry.C:
			d.retryUnresolved(ctx)
			d.bgp.Alive() // the loop turns: BGP keeps announcing
		case ev := <-d.hc.Events():
			d.healthChanged(ev)
		}
	}
}

// shutdown stops the daemon: omega scripts, then VRRP hands its addresses
// over gracefully (priority 0, the addresses go once the new master is
// heard), and with purge the program is detached and the pins removed.
// The API socket goes last, so that `xlb stop` returns once all is done.
func (d *Daemon) shutdown(purge bool) error {
	d.log.Info("stopping", "remove_data_path", purge)
	d.omega()
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	// A reload in flight finishes, and the instances it replaced release.
	d.reloading <- struct{}{}
	d.bgp.Stop() // the graceful leave: the program forwards meanwhile
	d.vrrp.Stop()
	d.hc.Close()
	d.res.Close()
	var err error
	if purge {
		err = d.dp.Unpin()
	} else {
		d.log.Info("the XDP program keeps forwarding with the last tables until the next xlb run takes it over; xlb stop removes it")
	}
	d.sweeper.Stop()
	err = errors.Join(err, d.dp.Close())
	d.opsStop()
	d.srv.Close()
	return err
}

// askStop asks the loop to stop and remove the data path (`xlb stop`).
func (d *Daemon) askStop() {
	select {
	case d.stops <- struct{}{}:
	default: // already asked
	}
}

// loadConfig reads and validates the configuration file; warnings are
// logged, errors returned with every file:line.
func (d *Daemon) loadConfig() (*service.Config, error) {
	cfg, warnings, err := preflight.Load(d.opts.ConfigPath, d.opts.Format, preflight.Options{})
	for _, w := range warnings {
		d.log.Warn(w.String())
	}
	return cfg, err
}

// Reload re-reads the configuration and serves it. A configuration that
// does not load, or that the data path rejects, changes nothing: the old
// one keeps serving and its flows keep their backends. Reloads run one at a
// time: one waits for the VRRP instances the previous one replaced to
// release (at most their Master_Down_Interval), and gives up with an error
// well within api.ReloadTimeout.
func (d *Daemon) Reload(ctx context.Context) error {
	select {
	case d.reloading <- struct{}{}:
	case <-time.After(api.ReloadTimeout / 2):
		return errors.New("a previous reload is still releasing its VRRP instances; try again")
	case <-ctx.Done():
		return ctx.Err()
	}
	prev, err := d.reload(ctx)
	if err != nil {
		d.log.Error("reload rejected, old configuration still served", "err", err)
		d.ops.Loaded(nil, err)
	}
	go func() {
		if prev != nil {
			prev.Wait()
		}
		<-d.reloading
	}()
	return err
}

// reload serves the configuration file anew and returns the VRRP set it
// replaced, if any, whose dropped instances are releasing.
func (d *Daemon) reload(ctx context.Context) (*ha.Set, error) {
	cfg, err := d.loadConfig()
	if err != nil {
		return nil, err
	}
	// Changed VRRP settings get a new set, built and checked before
	// anything changes (see ha.Set.Start for how it takes over).
	d.mu.Lock()
	vrrpChanged := ha.Changed(d.cfg, cfg)
	d.mu.Unlock()
	var next *ha.Set
	if vrrpChanged {
		if next, err = ha.Prepare(cfg, d.opts.Interfaces[0], d.log); err != nil {
			return nil, err
		}
	}
	d.macs.Resolve(ctx, neighbours(cfg))
	targets := healthcheck.TargetsOf(cfg.Services)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		err = errors.New("xlb is stopping")
	} else {
		err = d.applyWith(cfg, d.hc.Preview(targets))
	}
	if err != nil {
		if next != nil {
			next.Abort()
		}
		return nil, err
	}
	prev := d.vrrp
	if next != nil {
		next.Start(prev)
		d.vrrp = next
	} else {
		prev = nil
	}
	d.cfg = cfg
	_, _ = d.ovr.Prune(cfg) // a server the reload removed loses its override
	d.ops.Loaded(cfg, nil)
	d.hc.SetDamping(cfg.Global.FlapDamping)
	if err := d.setTimeouts(cfg); err != nil {
		d.log.Error("reload: flow timeouts", "err", err)
	}
	d.hc.SetVIPs(cfg.VIPs())
	d.hc.Update(targets)
	d.log.Info("reloaded", "services", len(cfg.Services), "vrrp_changed", vrrpChanged)
	return prev, nil
}

func (d *Daemon) applyLocked(cfg *service.Config) error { return d.applyWith(cfg, d.hc) }

// locked runs fn with applies held off, with the served config and a function serving it anew.
func (d *Daemon) locked(fn func(cfg *service.Config, apply func() error) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return errors.New("xlb is stopping")
	}
	return fn(d.cfg, func() error { return d.applyLocked(d.cfg) })
}

// setTimeouts gives the data path the configuration's flow lifetimes, as
// the command line overrides them, and holds released backend ids as long
// as an entry naming one may be followed. The hold never shrinks: an entry
// a longer timeout kept may still name an id released under it.
func (d *Daemon) setTimeouts(cfg *service.Config) error {
	t := reconcile.DatapathTimeouts(cfg.Global.Timeouts.Override(d.opts.Timeouts))
	if err := d.dp.SetTimeouts(t); err != nil {
		return err
	}
	if h := t.Hold(); h > d.idHold {
		d.idHold = h
		d.bal.SetIDHold(h)
	}
	return nil
}

// applyWith serves cfg as health h says, and runs the quorum scripts its
// changes call for.
func (d *Daemon) applyWith(cfg *service.Config, h reconcile.Health) error {
	changed, err := d.rec.Apply(cfg, reconcile.Links{MACs: d.macs.MACs(), Sources: d.tunnelSources(cfg)}, h)
	if err != nil {
		return err
	}
	d.bgp.Served(cfg, h, d.rec)
	for _, c := range changed {
		d.scripts.Quorum(c.Service, c.Held)
	}
	return nil
}

// neighbours are the addresses whose MACs the data path needs: the DR
// servers', and the tunnel servers' next hops, which the program's FIB
// lookup finds in the kernel's table only once resolved.
func neighbours(cfg *service.Config) []netip.Addr {
	return append(cfg.RealServerAddrs(), srcaddr.NextHops(cfg.TunnelAddrs())...)
}

// tunnelSources are the outer sources toward cfg's tunnel servers that
// can be served (see srcaddr.Picker.Tunnels).
func (d *Daemon) tunnelSources(cfg *service.Config) map[netip.Addr]netip.Addr {
	d.srcs.SetVIPs(cfg.VIPs())
	macs := d.macs.MACs()
	srcs, errs := d.srcs.Tunnels(d.opts.Interfaces[0], cfg.TunnelAddrs(), func(a netip.Addr) bool { return macs[a] != nil })
	for _, err := range errs {
		d.log.Warn("tunnel real server", "err", err)
	}
	return srcs
}

// retryUnresolved resolves backends still without a MAC and serves those
// that now have one.
func (d *Daemon) retryUnresolved(ctx context.Context) {
	d.mu.Lock()
	addrs := neighbours(d.cfg)
	d.mu.Unlock()
	if !d.macs.Missing(addrs) {
		return
	}
	d.macs.Resolve(ctx, addrs)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after resolving backends", "err", err)
	}
}

// neighbourChanged follows a backend whose MAC changed: its flows follow
// it to the new MAC at once.
func (d *Daemon) neighbourChanged(ch neigh.Change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, changed := d.macs.Update(ch, neighbours(d.cfg))
	if !changed {
		return
	}
	d.log.Info("backend MAC changed", "backend", ch.IP, "old", old.String(), "new", ch.MAC.String())
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after MAC change", "backend", ch.IP, "err", err)
	}
}

// healthChanged serves a backend's new state: one transaction per event,
// as keepalived changes IPVS one destination at a time.
func (d *Daemon) healthChanged(ev healthcheck.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ops.HealthChanged(ev)
	s, known := d.cfg.Service(ev.Service)
	d.ramp.HealthChanged(ev, s.SlowStart)
	d.scripts.Health(ev, s, known && reconcile.AnyUp(s, d.hc))
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after health change", "backend", ev.Backend, "err", err)
	}
	if b, ok := s.Backend(ev.Backend); known && ok && ev.Changed {
		d.scripts.Backend(s, b, ev.Up)
	}
}

// interfaceChanged fits the program to its interface as it is now: a new
// MAC goes into the program, an interface created again gets the program
// attached again (with the maps, and so the flows, it had), and the real
// servers behind it are sent out of it under its new index.
func (d *Daemon) interfaceChanged(st ifwatch.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	last := d.iface[st.Name]
	ifwatch.Fit(d.dp.Port(st.Name), st.Name, last, st, d.log)
	d.iface[st.Name] = st
	if st.Gone() {
		return
	}
	if err := d.res.Refresh(); err != nil {
		d.log.Warn("neighbour resolution still uses the old interface", "err", err)
	}
	if len(d.opts.Interfaces) > 1 && st.Index != last.Index {
		if err := d.applyLocked(d.cfg); err != nil {
			d.log.Error("apply after an interface came back", "interface", st.Name, "err", err)
		}
	}
}

// omega runs the down scripts of services with omega, as keepalived does
// at shutdown, and waits for them: the process is about to exit. They are
// waited for without the lock, so the API still answers meanwhile.
func (d *Daemon) omega() {
	d.mu.Lock()
	wait := d.scripts.Omega(d.cfg.Services, d.hc.Up, d.rec.HoldsQuorum)
	d.mu.Unlock()
	wait()
}
