package daemon

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// vrrpSet is the running VRRP instances of a configuration, with the
// trackers that feed them (vrrp_script results, interface link state).
type vrrpSet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	insts  map[string]*vrrp.Instance
}

// startVRRP starts every vrrp_instance of cfg. Each holds its virtual
// addresses (and sends gratuitous ARP/NA) while master; the data path
// forwards VIP traffic whatever the state, so a standby still serves
// frames that stale ARP caches send it.
func (d *Daemon) startVRRP(cfg *service.Config) (*vrrpSet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	set := &vrrpSet{cancel: cancel, insts: map[string]*vrrp.Instance{}}
	fail := func(err error) (*vrrpSet, error) {
		set.stop()
		return nil, err
	}
	groups := map[string]*vrrp.Group{}
	tracks := map[string][]*vrrp.Instance{} // interface -> instances tracking it
	for _, g := range cfg.SyncGroups {
		grp, err := vrrp.NewGroup(g, nil)
		if err != nil {
			return fail(fmt.Errorf("vrrp_sync_group %s: %w", g.Name, err))
		}
		for _, name := range g.Instances {
			groups[name] = grp
		}
	}
	for _, ic := range cfg.VRRP {
		if ic.Interface == "" {
			ic.Interface = d.opts.Interface
		}
		ipv6 := len(ic.VirtualIPs) > 0 && ic.VirtualIPs[0].Prefix.Addr().Is6()
		conn, err := vrrp.Listen(vrrp.ConnConfig{
			Interface: ic.Interface,
			IPv6:      ipv6,
			Source:    ic.SourceIP,
			Unicast:   len(ic.UnicastPeers) > 0,
		})
		if err != nil {
			return fail(fmt.Errorf("vrrp_instance %s: %w", ic.Name, err))
		}
		log := d.log.With("vrrp_instance", ic.Name)
		an := announce.New(announce.FromInstance(ic), announce.Options{Logger: log})
		// An xlb that was killed left its addresses behind; until this
		// instance is elected they would answer ARP beside the real
		// master's. keepalived clears them at startup for the same reason.
		if err := an.Release(); err != nil {
			log.Warn("cannot remove virtual addresses left by an earlier run", "err", err)
		}
		inst, err := vrrp.New(ic, vrrp.Options{
			Conn:   conn,
			Logger: d.log, // the instance names itself in its lines
			Group:  groups[ic.Name],
			OnChange: func(e vrrp.Event) {
				var err error
				switch {
				case e.To.HoldsAddresses() && !e.From.HoldsAddresses():
					err = an.Acquire()
				case !e.To.HoldsAddresses() && e.From.HoldsAddresses():
					err = an.Release()
				}
				if err != nil {
					log.Error("virtual addresses", "err", err)
				}
			},
		})
		if err != nil {
			conn.Close()
			return fail(fmt.Errorf("vrrp_instance %s: %w", ic.Name, err))
		}
		set.insts[ic.Name] = inst
		set.wg.Add(1)
		go func() {
			defer set.wg.Done()
			if err := inst.Run(ctx); err != nil {
				log.Error("vrrp instance stopped", "err", err)
			}
		}()
		for _, tr := range ic.TrackInterfaces {
			tracks[tr.Name] = append(tracks[tr.Name], inst)
		}
	}
	set.trackInterfaces(ctx, slices.Collect(maps.Keys(tracks)), func(name string, up bool) {
		for _, inst := range tracks[name] {
			inst.SetInterface(name, up)
		}
	}, d.log)
	for _, sc := range cfg.Scripts {
		var users []*vrrp.Instance
		for _, ic := range cfg.VRRP {
			for _, tr := range ic.TrackScripts {
				if tr.Name == sc.Name {
					users = append(users, set.insts[ic.Name])
				}
			}
		}
		if len(users) == 0 {
			continue
		}
		if err := script.Check(sc.Script, sc.Source.File); err != nil {
			return fail(fmt.Errorf("vrrp_script %s: script %q: %w", sc.Name, sc.Script, err))
		}
		argv, err := script.Split(sc.Script)
		if err != nil {
			return fail(fmt.Errorf("vrrp_script %s: script %q: %w", sc.Name, sc.Script, err))
		}
		set.runScript(ctx, sc, argv, func(good bool) {
			for _, inst := range users {
				inst.SetScript(sc.Name, good)
			}
		}, d.log.With("vrrp_script", sc.Name))
	}
	return set, nil
}

// stop stops every instance gracefully (priority 0, then the addresses go
// once the new master is heard) and waits for them.
func (s *vrrpSet) stop() {
	s.cancel()
	s.wg.Wait()
}

// runScript runs a vrrp_script every interval, as its user and bounded by
// its timeout, and reports its verdict to the instances tracking it
// whenever the verdict changes (scriptVerdict).
func (s *vrrpSet) runScript(ctx context.Context, sc service.VRRPScript, argv []string, report func(good bool), log interface{ Warn(string, ...any) }) {
	interval := max(sc.Interval, 100*time.Millisecond)
	timeout := sc.Timeout
	if timeout <= 0 {
		timeout = interval
	}
	v := newScriptVerdict(sc.Rise, sc.Fall, sc.InitFail)
	if sc.InitFail {
		report(false)
	}
	run := func() error {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st, err := script.Command{Args: argv, User: sc.User}.Run(rctx)
		if err != nil {
			return err
		}
		return st.Err()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			err := run()
			if ctx.Err() != nil {
				return
			}
			if good, changed := v.add(err == nil); changed {
				if !good {
					log.Warn("vrrp_script failing", "err", err)
				}
				report(good)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// scriptVerdict turns a vrrp_script's exit statuses into its verdict the
// way keepalived counts them: good after rise successes in a row, failed
// after fall failures in a row. Before the first run the script has no
// verdict and that run decides either way; with init_fail it starts
// failed instead and must rise.
type scriptVerdict struct {
	rise, fall int
	// n runs from 0 (failed, no success since) to rise+fall-1 (good, no
	// failure since); the script is good from rise on.
	n     int
	fresh bool
}

func newScriptVerdict(rise, fall int, initFail bool) *scriptVerdict {
	v := &scriptVerdict{rise: max(rise, 1), fall: max(fall, 1)}
	if !initFail {
		v.n, v.fresh = v.rise-1, true
	}
	return v
}

// add records one run and returns the verdict and whether it changed
// (always true for the deciding first run).
func (v *scriptVerdict) add(ok bool) (good, changed bool) {
	top := v.rise + v.fall - 1
	switch {
	case ok && v.n < v.rise-1:
		v.n++
	case ok:
		changed = v.n < v.rise || v.fresh
		v.n = top
	case v.n > v.rise:
		v.n--
	default:
		changed = v.n >= v.rise || v.fresh
		v.n = 0
	}
	v.fresh = false
	return v.n >= v.rise, changed
}

// trackInterfaces reports the link state (operationally up, with carrier)
// of the named interfaces, now and at every change, from one netlink
// subscription: a tracked interface going down moves an instance to FAULT
// or lowers its priority, as its weight says.
func (s *vrrpSet) trackInterfaces(ctx context.Context, names []string, report func(name string, up bool), log interface{ Warn(string, ...any) }) {
	if len(names) == 0 {
		return
	}
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		log.Warn("track_interface: cannot follow link state", "err", err)
		return
	}
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		report(name, err == nil && linkUp(l))
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if name := u.Link.Attrs().Name; slices.Contains(names, name) {
					report(name, linkUp(u.Link))
				}
			}
		}
	}()
}

func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
}
