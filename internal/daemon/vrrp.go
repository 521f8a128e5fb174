package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/risefall"
	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// vrrpSet is the VRRP instances of a configuration, with the trackers
// that feed them (vrrp_script results, interface link state).
// prepareVRRP builds one without touching the host or the link; start
// runs it, taking over from the set it replaces.
type vrrpSet struct {
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	log     *slog.Logger
	routers []*router
	groupOf map[string]string // instance name -> vrrp_sync_group
	tracks  map[string][]*vrrp.Instance
	scripts []trackedScript

	mu       sync.Mutex
	verdicts map[string]bool // vrrp_script (scriptKey) -> its last verdict
}

// router is one vrrp_instance: the state machine, its connection (owned
// by the machine once it runs) and the addresses it holds while master.
type router struct {
	cfg  service.VRRPInstance
	inst *vrrp.Instance
	conn vrrp.Conn
	an   *announce.Announcer
}

// routerKey is how keepalived matches an instance across a reload: the
// virtual router it speaks for, not its name.
type routerKey struct {
	iface string
	vrid  int
	ipv6  bool
}

func (r *router) key() routerKey {
	return routerKey{r.cfg.Interface, r.cfg.VirtualRouterID, isIPv6(r.cfg)}
}

func isIPv6(ic service.VRRPInstance) bool {
	return len(ic.VirtualIPs) > 0 && ic.VirtualIPs[0].Prefix.Addr().Is6()
}

// trackedScript is a vrrp_script some instance tracks.
type trackedScript struct {
	cfg   service.VRRPScript
	argv  []string
	users []*vrrp.Instance
}

// scriptKey identifies a vrrp_script across a reload: a changed command or
// user starts without the old verdict.
func scriptKey(sc service.VRRPScript) string {
	return sc.Name + "\x00" + sc.Script + "\x00" + sc.User
}

// prepareVRRP builds, validates and opens the connections of every
// vrrp_instance of cfg, without sending anything or changing an address:
// a configuration that fails here leaves the running one untouched.
func (d *Daemon) prepareVRRP(cfg *service.Config) (*vrrpSet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	set := &vrrpSet{
		ctx: ctx, cancel: cancel, log: d.log,
		groupOf:  map[string]string{},
		tracks:   map[string][]*vrrp.Instance{}, // interface -> instances tracking it
		verdicts: map[string]bool{},
	}
	fail := func(err error) (*vrrpSet, error) {
		set.abort()
		return nil, err
	}
	groups := map[string]*vrrp.Group{}
	for _, g := range cfg.SyncGroups {
		if err := checkNotify("vrrp_sync_group "+g.Name, g.Notify, g.Source.File); err != nil {
			return fail(err)
		}
		notify := newNotifier("GROUP", g.Name, g.Notify, d.log.With("vrrp_sync_group", g.Name))
		grp := vrrp.NewGroup(vrrp.GroupConfig{Name: g.Name, Instances: g.Instances}, func(e vrrp.GroupEvent) { notify.changed(e.To, e.Priority, e.Resumed) })
		for _, name := range g.Instances {
			groups[name] = grp
			set.groupOf[name] = g.Name
		}
	}
	insts := map[string]*vrrp.Instance{}
	for _, ic := range cfg.VRRP {
		if ic.Interface == "" {
			ic.Interface = d.opts.Interface
		}
		// keepalived tracks an instance's own interface unless told not
		// to: a master whose link is gone must give up its addresses, and
		// its notify_fault script must hear of it.
		if !ic.DontTrackPrimary && !slices.ContainsFunc(ic.TrackInterfaces, func(t service.Track) bool { return t.Name == ic.Interface }) {
			ic.TrackInterfaces = append(slices.Clone(ic.TrackInterfaces), service.Track{Name: ic.Interface})
		}
		conn, err := vrrp.Listen(vrrp.ConnConfig{
			Interface: ic.Interface,
			IPv6:      isIPv6(ic),
			Source:    ic.SourceIP,
			Unicast:   len(ic.UnicastPeers) > 0,
		})
		if err != nil {
			return fail(fmt.Errorf("vrrp_instance %s: %w", ic.Name, err))
		}
		log := d.log.With("vrrp_instance", ic.Name)
		notify := newNotifier("INSTANCE", ic.Name, ic.Notify, log)
		an := announce.New(announceConfig(ic), announce.Options{Logger: log})
		repeat, delay := ic.GARPLowerPrioRepeat, ic.GARPLowerPrioDelay
		inst, err := vrrp.New(instanceConfig(ic), vrrp.Options{
			Conn:            conn,
			Logger:          d.log, // the instance names itself in its lines
			Group:           groups[ic.Name],
			OnLowerPriority: func() { an.Reannounce(repeat, delay) },
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
				notify.changed(e.To, e.Priority, e.Resumed)
			},
		})
		if err != nil {
			conn.Close()
			return fail(err) // it names the instance
		}
		if err := checkNotify("vrrp_instance "+ic.Name, ic.Notify, ic.Source.File); err != nil {
			conn.Close()
			return fail(err)
		}
		set.routers = append(set.routers, &router{cfg: ic, inst: inst, conn: conn, an: an})
		insts[ic.Name] = inst
		for _, tr := range ic.TrackInterfaces {
			set.tracks[tr.Name] = append(set.tracks[tr.Name], inst)
		}
	}
	for _, sc := range cfg.Scripts {
		var users []*vrrp.Instance
		for _, ic := range cfg.VRRP {
			for _, tr := range ic.TrackScripts {
				if tr.Name == sc.Name {
					users = append(users, insts[ic.Name])
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
		set.scripts = append(set.scripts, trackedScript{cfg: sc, argv: argv, users: users})
	}
	return set, nil
}

// instanceConfig is what the state machine of a vrrp_instance needs of
// it; Validate has checked its ranges.
func instanceConfig(in service.VRRPInstance) vrrp.Config {
	c := vrrp.Config{
		Name: in.Name, VRID: uint8(in.VirtualRouterID), Priority: in.Priority,
		AdvertInt: in.AdvertInt, Version: in.Version,
		Preempt: in.Preempt, PreemptDelay: in.PreemptDelay,
		UnicastPeers: in.UnicastPeers, CheckUnicastSrc: in.CheckUnicastSrc,
		SkipCheckAdvAddr:     in.SkipCheckAdvAddr,
		LowerPrioNoAdvert:    in.LowerPrioNoAdvert,
		HigherPrioSendAdvert: in.HigherPrioSendAdvert,
		LowerPrioReannounce:  in.GARPLowerPrioRepeat > 0,
	}
	if in.Auth != nil && in.Auth.Type == "PASS" {
		c.PassAuth, c.Password = true, in.Auth.Pass
	}
	for _, v := range in.VirtualIPs {
		c.Addrs = append(c.Addrs, v.Prefix.Addr())
	}
	for _, t := range in.TrackInterfaces {
		c.TrackInterfaces = append(c.TrackInterfaces, vrrp.Track{Name: t.Name, Weight: t.Weight})
	}
	for _, t := range in.TrackScripts {
		c.TrackScripts = append(c.TrackScripts, vrrp.Track{Name: t.Name, Weight: t.Weight})
	}
	return c
}

// announceConfig is what the announcer of a vrrp_instance holds and how
// it announces it.
func announceConfig(in service.VRRPInstance) announce.Config {
	c := announce.Config{
		Name: "vrrp_instance " + in.Name, Interface: in.Interface,
		Repeat: in.GARPMasterRepeat, Delay: in.GARPMasterDelay, Refresh: in.GARPMasterRefresh,
		RefreshRepeat: in.GARPMasterRefreshRepeat,
	}
	for _, v := range in.VirtualIPs {
		c.VIPs = append(c.VIPs, announce.VIP{Prefix: v.Prefix, Dev: v.Dev, Label: v.Label})
	}
	return c
}

// abort closes a prepared set that never ran.
func (s *vrrpSet) abort() {
	for _, r := range s.routers {
		r.conn.Close()
	}
	s.cancel()
}

// start runs the set. Each instance holds its virtual addresses (and
// sends gratuitous ARP/NA) while master; the data path forwards VIP
// traffic whatever the state, so a standby still serves frames that stale
// ARP caches send it.
//
// With prev, the set replaces a running one after a reload, as keepalived
// does: an instance for the same virtual router takes over its
// predecessor's state, so a master stays master and its addresses never
// leave the interface (vrrp.Instance.Handoff and Resume), and vrrp_scripts
// that did not change keep their verdicts. prev's other instances stop
// gracefully; wait for them with prev.wait.
func (s *vrrpSet) start(prev *vrrpSet) {
	before := map[routerKey]*router{}
	if prev != nil {
		for _, r := range prev.routers {
			before[r.key()] = r
		}
		prev.mu.Lock()
		for _, sc := range s.scripts {
			if good, ok := prev.verdicts[scriptKey(sc.cfg)]; ok {
				s.verdicts[scriptKey(sc.cfg)] = good
			}
		}
		prev.mu.Unlock()
	}
	// The tracked objects' state is known before any instance leaves
	// Init, so that none starts in a state it must leave at once.
	s.trackInterfaces(s.ctx, slices.Collect(maps.Keys(s.tracks)), func(name string, up bool) {
		for _, inst := range s.tracks[name] {
			inst.SetInterface(name, up)
		}
	}, s.log)
	for _, sc := range s.scripts {
		s.runScript(s.ctx, sc.cfg, sc.argv, func(good bool) {
			s.mu.Lock()
			s.verdicts[scriptKey(sc.cfg)] = good
			s.mu.Unlock()
			for _, inst := range sc.users {
				inst.SetScript(sc.cfg.Name, good)
			}
		}, s.log.With("vrrp_script", sc.cfg.Name))
	}

	handed := make([]vrrp.State, len(s.routers))
	groups := make([]string, len(s.routers))
	for i, r := range s.routers {
		handed[i] = vrrp.StateInit
		if old := before[r.key()]; old != nil {
			handed[i] = old.inst.Handoff()
		}
		groups[i] = s.groupOf[r.cfg.Name]
	}
	if prev != nil {
		// Stops the instances not handed over, gracefully.
		prev.cancel()
	}
	resume := resumeStates(handed, groups)
	for i, r := range s.routers {
		old := before[r.key()]
		state := resume[i]
		if old == nil && state != vrrp.StateMaster {
			// An xlb that was killed left its addresses behind; until
			// this instance is elected they would answer ARP beside the
			// real master's. keepalived clears them at startup for the
			// same reason.
			if err := r.an.Release(); err != nil {
				s.log.Warn("cannot remove virtual addresses left by an earlier run", "vrrp_instance", r.cfg.Name, "err", err)
			}
		}
		r.inst.Resume(state)
		if old != nil {
			if err := old.an.HandOver(r.an); err != nil {
				s.log.Error("virtual addresses", "vrrp_instance", r.cfg.Name, "err", err)
			}
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := r.inst.Run(s.ctx); err != nil {
				s.log.Error("vrrp instance stopped", "vrrp_instance", r.cfg.Name, "err", err)
			}
		}()
	}
}

// resumeStates says what each instance of a new set resumes from, given
// the state its predecessor was handed over in (StateInit for none) and
// its sync group ("" for none). A sync group resumes as master if any
// member was one: a member new to the group would otherwise start as
// backup and drag the others along, taking their addresses off the
// interface.
func resumeStates(handed []vrrp.State, groups []string) []vrrp.State {
	master := map[string]bool{}
	for i, st := range handed {
		if groups[i] != "" && st == vrrp.StateMaster {
			master[groups[i]] = true
		}
	}
	out := slices.Clone(handed)
	for i := range out {
		if master[groups[i]] {
			out[i] = vrrp.StateMaster
		}
	}
	return out
}

// state is the set's part of `xlb vrrp`.
func (s *vrrpSet) state() []api.VRRPInstance {
	var out []api.VRRPInstance
	for _, r := range s.routers {
		st := r.inst.Stats()
		in := api.VRRPInstance{
			Name: r.cfg.Name, Interface: r.cfg.Interface, VRID: r.cfg.VirtualRouterID,
			State: r.inst.State().String(), Priority: r.inst.Priority(), BasePriority: r.cfg.Priority,
			Sent: st.Sent, Received: st.Received - st.OtherVRID,
		}
		for _, n := range st.Dropped {
			in.Dropped += n
		}
		for _, v := range r.cfg.VirtualIPs {
			in.VIPs = append(in.VIPs, v.Prefix.String())
		}
		out = append(out, in)
	}
	return out
}

// stop stops every instance gracefully (priority 0, then the addresses go
// once the new master is heard) and waits for them.
func (s *vrrpSet) stop() {
	s.cancel()
	s.wait()
}

// wait waits for the set's instances and trackers to end.
func (s *vrrpSet) wait() {
	s.wg.Wait()
}

// runScript runs a vrrp_script every interval, as its user and bounded by
// its timeout, and reports its verdict to the instances tracking it
// whenever the verdict changes (risefall.Counter). A verdict the set carried
// over from a reload is reported at once and stands until the runs
// change it; init_fail applies only to a script without one.
func (s *vrrpSet) runScript(ctx context.Context, sc service.VRRPScript, argv []string, report func(good bool), log interface{ Warn(string, ...any) }) {
	interval := max(sc.Interval, 100*time.Millisecond)
	timeout := sc.Timeout
	if timeout <= 0 {
		timeout = interval
	}
	// keepalived's counting: good after rise successes in a row, failed
	// after fall failures in a row. Before the first run the script has
	// no verdict and that run decides either way; with init_fail it
	// starts failed instead and must rise.
	v := risefall.Undecided(sc.Rise, sc.Fall)
	s.mu.Lock()
	good, carried := s.verdicts[scriptKey(sc)]
	s.mu.Unlock()
	switch {
	case carried:
		v = risefall.New(sc.Rise, sc.Fall, good)
		report(good)
	case sc.InitFail:
		v = risefall.New(sc.Rise, sc.Fall, false)
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
			if good, changed := v.Add(err == nil); changed {
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
