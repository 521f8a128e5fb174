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
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/config"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/neigh"
	"github.com/xlb-project/xlb/internal/notify"
	"github.com/xlb-project/xlb/internal/reconcile"
	"github.com/xlb-project/xlb/internal/scriptsec"
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
	// Timeouts override, field by field, the flow lifetimes of the
	// configuration (`xlb run --timeouts`).
	Timeouts service.Timeouts
	Log      *slog.Logger
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
	macs *neigh.Cache
	hc   *healthcheck.Manager
	// scripts runs the real servers' and services' notify scripts.
	scripts notify.Runner

	mu  sync.Mutex // guards cfg and rec, and serialises applies
	cfg *service.Config
	rec *reconcile.Reconciler
	// vrrp is the running VRRP set; only Run's goroutine, which also
	// serves reloads, replaces it.
	vrrp *vrrpSet
	// idHold is the longest backend id hold given to the balancer.
	idHold time.Duration
	// sweeper sweeps the flow table and counts connections.
	sweeper *sweeper
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
	d := &Daemon{opts: opts, log: opts.Log, scripts: notify.Runner{Log: opts.Log}}

	cfg, err := d.loadConfig()
	if err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", opts.Interface, err)
	}
	// A run that died without cleaning up left its flow table pinned (its
	// program may still be forwarding with it) with the record of its
	// backend ids: with both, established connections keep their real
	// servers across the restart, whatever the tables say now. Load locks
	// the pin directory first: a second daemon on it stops here.
	d.dp, err = datapath.Load(datapath.Options{
		PinDir:        opts.PinDir,
		MAC:           ifi.HardwareAddr,
		FlowTableSize: opts.FlowTableSize,
		Fresh:         true,
		KeepFlows:     true,
		LegacyIDs:     filepath.Join(filepath.Dir(opts.Socket), "backend-ids.json"),
	})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, d.dp.Unpin(), d.dp.Close())
	}()
	ids := d.dp.IDs()
	if d.bal, err = balancer.NewFrom(d.dp, ids); err != nil {
		return fmt.Errorf("pin directory %s: %w", opts.PinDir, err)
	}
	d.rec = reconcile.New(d.bal)
	if err := d.setTimeouts(cfg); err != nil {
		return err
	}
	if len(ids.Backends) > 0 {
		d.log.Info("adopted the flow table and backend ids of an earlier run", "backends", len(ids.Backends))
	}
	d.res, err = neigh.New(opts.Interface, d.log)
	if err != nil {
		return err
	}
	defer d.res.Close()
	d.macs = neigh.NewCache(d.res, resolveTimeout, d.log)

	d.hc = healthcheck.NewManager(healthcheck.Options{Log: d.log, Damping: cfg.Global.FlapDamping})
	defer d.hc.Close()

	// The checks first: a backend whose check starts down (alpha) must
	// not take traffic from the first table on.
	d.hc.Update(healthcheck.TargetsOf(cfg.Services))
	d.macs.Resolve(ctx, cfg.RealServerAddrs())
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
	// Stopped before the data path closes (defers run last first).
	d.sweeper = startSweeper(ctx, d.dp, d.log)
	defer d.sweeper.stop()
	d.cfg = cfg

	// VRRP stops before the program detaches (defers run last first):
	// a stopping master hands the VIP over while still forwarding.
	if d.vrrp, err = d.prepareVRRP(cfg); err != nil {
		return err
	}
	d.vrrp.start(nil)
	defer func() { d.vrrp.stop() }()

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
	if err := scriptsec.Check(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
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
	// anything changes (see vrrpSet.start for how it takes over).
	d.mu.Lock()
	vrrpChanged := !reflect.DeepEqual(vrrpPart(d.cfg), vrrpPart(cfg))
	d.mu.Unlock()
	var next *vrrpSet
	if vrrpChanged {
		if next, err = d.prepareVRRP(cfg); err != nil {
			d.log.Error("reload rejected, old configuration still served", "err", err)
			return err
		}
	}
	d.macs.Resolve(ctx, cfg.RealServerAddrs())
	d.mu.Lock()
	if err := d.applyLocked(cfg); err != nil {
		d.mu.Unlock()
		if next != nil {
			next.abort()
		}
		d.log.Error("reload rejected, old configuration still served", "err", err)
		return err
	}
	prev := d.vrrp
	if next != nil {
		next.start(prev)
		d.vrrp = next
	}
	d.cfg = cfg
	if err := d.setTimeouts(cfg); err != nil {
		d.log.Error("reload: flow timeouts", "err", err)
	}
	d.hc.SetDamping(cfg.Global.FlapDamping)
	d.hc.Update(healthcheck.TargetsOf(cfg.Services))
	d.mu.Unlock()
	d.log.Info("reloaded", "services", len(cfg.Services), "vrrp_changed", vrrpChanged)
	if next != nil && prev != nil {
		// Instances the new configuration dropped release gracefully.
		prev.wait()
	}
	return nil
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

func (d *Daemon) apply(cfg *service.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applyLocked(cfg)
}

func (d *Daemon) applyLocked(cfg *service.Config) error {
	var h reconcile.Health
	if d.hc != nil {
		h = d.hc
	}
	changed, err := d.rec.Apply(cfg, d.macs.MACs(), h)
	if err != nil {
		return err
	}
	for _, c := range changed {
		d.scripts.Quorum(c.Service, c.Held)
	}
	return nil
}

// retryUnresolved resolves backends still without a MAC and serves those
// that now have one.
func (d *Daemon) retryUnresolved(ctx context.Context) {
	d.mu.Lock()
	addrs := d.cfg.RealServerAddrs()
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
	old, changed := d.macs.Update(ch, d.cfg.RealServerAddrs())
	if !changed {
		return
	}
	d.log.Info("backend MAC changed", "backend", ch.IP, "old", old.String(), "new", ch.MAC.String())
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after MAC change", "backend", ch.IP, "err", err)
	}
}

// vrrpPart is the configuration's VRRP settings with the lines they were
// read from set to zero: a reload that only moves them (an edit above
// them, a comment) leaves the running instances alone.
func vrrpPart(cfg *service.Config) any {
	insts := slices.Clone(cfg.VRRP)
	for i := range insts {
		in := &insts[i]
		in.Source.Line = 0
		in.VirtualIPs = slices.Clone(in.VirtualIPs)
		for j := range in.VirtualIPs {
			in.VirtualIPs[j].Source.Line = 0
		}
		in.TrackScripts, in.TrackInterfaces = slices.Clone(in.TrackScripts), slices.Clone(in.TrackInterfaces)
		for j := range in.TrackScripts {
			in.TrackScripts[j].Source.Line = 0
		}
		for j := range in.TrackInterfaces {
			in.TrackInterfaces[j].Source.Line = 0
		}
	}
	groups := slices.Clone(cfg.SyncGroups)
	for i := range groups {
		groups[i].Source.Line = 0
	}
	scripts := slices.Clone(cfg.Scripts)
	for i := range scripts {
		scripts[i].Source.Line = 0
	}
	return []any{insts, groups, scripts}
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
	s, known := d.cfg.Service(ev.Service)
	if known && !ev.Up && !reconcile.AnyUp(s, d.hc) {
		if s.SorryServer != nil {
			d.log.Warn("every backend is down: new connections go to the sorry server", "service", ev.Service, "sorry_server", s.SorryServer.Addr)
		} else {
			d.log.Error("every backend is down and there is no sorry_server: keeping the last table so the VIP still answers", "service", ev.Service)
		}
	}
	if err := d.applyLocked(d.cfg); err != nil {
		d.log.Error("apply after health change", "backend", ev.Backend, "err", err)
	}
	if b, ok := s.Backend(ev.Backend); known && ok && ev.Changed {
		d.scripts.Backend(s, b, ev.Up)
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

// socketDir creates the socket's directory, root only.
func socketDir(path string) error {
	return os.MkdirAll(filepath.Dir(path), 0o700)
}
