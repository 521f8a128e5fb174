// Package ha is xlb's high-availability node: the VRRP instances of a
// configuration with what keepalived's VRRP process does around them. It
// builds each vrrp_instance's state machine (package vrrp) and the
// announcer of its addresses (package announce) from the configuration,
// runs the vrrp_scripts and follows the link state of tracked interfaces
// that feed them, starts the notify scripts on the state changes they
// report, and hands a running set over to its successor on a reload.
//
// The daemon drives a Set: Prepare it, Start it (in place of the set it
// replaces), read its State, and Stop it.
package ha

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/clock"
	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// Set is the VRRP instances of a configuration, with the trackers that
// feed them (vrrp_script results, interface link state). Prepare builds
// one without touching the host or the link; Start runs it, taking over
// from the set it replaces.
type Set struct {
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

	// waitScripts waits for the notify scripts started so far.
	waitScripts func()
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

// host is how a Set reaches the machine it runs on; tests replace it.
type host struct {
	listen func(vrrp.ConnConfig) (vrrp.Conn, error)
	clock  clock.Clock
	// addrs and sender are the announcers'; nil means netlink and raw
	// sockets.
	addrs  announce.Addresses
	sender announce.Sender
	// scripts runs notify scripts as user, logging failures to log.
	scripts func(user string, log *slog.Logger) scriptRunner
	// waitScripts returns once the scripts started have ended; nil
	// waits for none.
	waitScripts func()
}

// notifying counts the notify scripts the real host runs, so that Stop
// waits for notify_stop and the backup scripts of a stopping master
// (each bounded by script.NotifyTimeout) before the process exits.
var notifying sync.WaitGroup

// system is the real host.
var system = host{
	listen: func(c vrrp.ConnConfig) (vrrp.Conn, error) { return vrrp.Listen(c) },
	clock:  clock.Real{},
	scripts: func(user string, log *slog.Logger) scriptRunner {
		return execRunner{User: user, Logger: log, pending: &notifying}
	},
	waitScripts: notifying.Wait,
}

// Prepare builds, validates and opens the connections of every
// vrrp_instance of cfg, without sending anything or changing an address:
// a configuration that fails here leaves the running one untouched. An
// instance without an interface speaks on defaultInterface. log gets
// the set's lines, each naming its instance, sync group or script.
func Prepare(cfg *service.Config, defaultInterface string, log *slog.Logger) (*Set, error) {
	return prepare(cfg, defaultInterface, log, system)
}

func prepare(cfg *service.Config, defaultInterface string, logger *slog.Logger, h host) (*Set, error) {
	ctx, cancel := context.WithCancel(context.Background())
	set := &Set{
		ctx: ctx, cancel: cancel, log: logger, waitScripts: h.waitScripts,
		groupOf:  map[string]string{},
		tracks:   map[string][]*vrrp.Instance{}, // interface -> instances tracking it
		verdicts: map[string]bool{},
	}
	fail := func(err error) (*Set, error) {
		set.Abort()
		return nil, err
	}
	groups := map[string]*vrrp.Group{}
	for _, g := range cfg.SyncGroups {
		if err := checkNotify("vrrp_sync_group "+g.Name, g.Notify, g.Source.File); err != nil {
			return fail(err)
		}
		log := logger.With("vrrp_sync_group", g.Name)
		notify := notifier{run: h.scripts(g.Notify.User, log), n: g.Notify, kind: "GROUP", name: g.Name}
		grp := vrrp.NewGroup(vrrp.GroupConfig{Name: g.Name, Instances: g.Instances}, func(e vrrp.GroupEvent) {
			notify.changed(e.To, e.Priority, e.Resumed)
		})
		for _, name := range g.Instances {
			groups[name] = grp
			set.groupOf[name] = g.Name
		}
	}
	insts := map[string]*vrrp.Instance{}
	for _, ic := range cfg.VRRP {
		if ic.Interface == "" {
			ic.Interface = defaultInterface
		}
		// keepalived tracks an instance's own interface unless told not
		// to: a master whose link is gone must give up its addresses, and
		// its notify_fault script must hear of it.
		if !ic.DontTrackPrimary && !slices.ContainsFunc(ic.TrackInterfaces, func(t service.Track) bool { return t.Name == ic.Interface }) {
			ic.TrackInterfaces = append(slices.Clone(ic.TrackInterfaces), service.Track{Name: ic.Interface})
		}
		conn, err := h.listen(vrrp.ConnConfig{
			Interface: ic.Interface,
			IPv6:      isIPv6(ic),
			Source:    ic.SourceIP,
			Unicast:   len(ic.UnicastPeers) > 0,
		})
		if err != nil {
			return fail(fmt.Errorf("vrrp_instance %s: %w", ic.Name, err))
		}
		log := logger.With("vrrp_instance", ic.Name)
		notify := notifier{run: h.scripts(ic.Notify.User, log), n: ic.Notify, kind: "INSTANCE", name: ic.Name}
		an := announce.New(announceConfig(ic), announce.Options{Addresses: h.addrs, Sender: h.sender, Clock: h.clock, Logger: log})
		repeat, delay := ic.GARPLowerPrioRepeat, ic.GARPLowerPrioDelay
		inst, err := vrrp.New(instanceConfig(ic), vrrp.Options{
			Conn:            conn,
			Clock:           h.clock,
			Logger:          logger, // the instance names itself in its lines
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

// Abort closes a prepared set that never ran.
func (s *Set) Abort() {
	for _, r := range s.routers {
		r.conn.Close()
	}
	s.cancel()
}

// Start runs the set. Each instance holds its virtual addresses (and
// sends gratuitous ARP/NA) while master; the data path forwards VIP
// traffic whatever the state, so a standby still serves frames that stale
// ARP caches send it.
//
// With prev, the set replaces a running one after a reload, as keepalived
// does: an instance for the same virtual router takes over its
// predecessor's state, so a master stays master and its addresses never
// leave the interface (vrrp.Instance.Handoff and Resume), and vrrp_scripts
// that did not change keep their verdicts. prev's other instances stop
// gracefully; wait for them with prev.Wait.
func (s *Set) Start(prev *Set) {
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

// State is the set's part of `xlb vrrp`: each instance's state,
// priorities, addresses and packet counts.
func (s *Set) State() []api.VRRPInstance {
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

// Stop stops every instance gracefully (priority 0, then the addresses go
// once the new master is heard) and waits for them.
// The notify scripts the stop started (notify_stop, and a master's
// notify_backup) are waited for too: the process is about to exit.
func (s *Set) Stop() {
	s.cancel()
	s.Wait()
	if s.waitScripts != nil {
		s.waitScripts()
	}
}

// Wait waits for the set's instances and trackers to end.
func (s *Set) Wait() {
	s.wg.Wait()
}
