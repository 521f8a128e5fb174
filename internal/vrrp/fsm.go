package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/clock"
)

// State is an instance's VRRP state.
type State int

// States. Releasing is xlb's addition: a stopping master that has
// announced priority 0 but keeps its addresses, and so keeps forwarding,
// until the new master is heard or Master_Down_Interval has passed.
const (
	StateInit State = iota
	StateBackup
	StateMaster
	StateReleasing
	StateFault
	StateStopped
)

var stateNames = [...]string{"INIT", "BACKUP", "MASTER", "RELEASING", "FAULT", "STOP"}

// String returns keepalived's name for the state, as notify scripts get it.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// HoldsAddresses reports whether the virtual addresses belong on this
// host in state s.
func (s State) HoldsAddresses() bool { return s == StateMaster || s == StateReleasing }

// Event is one state change.
type Event struct {
	Instance string
	From, To State
	// Priority is the effective priority at the change.
	Priority int
	Reason   string
	// Resumed marks the change of an instance that took over its
	// predecessor's state on a reload (Resume): nothing changed for the
	// world outside, and keepalived runs no notify script for it.
	Resumed bool
}

// GroupEvent is a sync group's change of state: one member changed, on
// its own account, and took the others along; each member reports its
// own Event first. Members stop one by one, so there is none for
// Releasing or Stopped.
type GroupEvent struct {
	Group string
	To    State
	// Priority is the effective priority of the member whose change
	// moved the group.
	Priority int
	// Resumed is as in Event, for that member.
	Resumed bool
}

// Options are an instance's collaborators.
type Options struct {
	Conn Conn
	// Clock defaults to the wall clock.
	Clock  clock.Clock
	Logger *slog.Logger
	// OnChange is called for every state change, in order, with the
	// instance's (or its sync group's) lock held: it must not call back
	// into the instance, nor wait for long. The caller adds the addresses
	// when To holds them and removes them when it no longer does, and
	// runs the notify scripts. A change to Master is reported before the
	// first advertisement is sent.
	OnChange func(Event)
	// OnLowerPriority is called, with the same lock held as OnChange,
	// when a master hears a lower priority and Config.LowerPrioReannounce
	// is set: the caller announces the addresses again.
	OnLowerPriority func()
	// Group is the sync group the instance belongs to, if any.
	Group *Group
}

// Stats counts an instance's packets.
type Stats struct {
	Received uint64
	Sent     uint64
	// OtherVRID counts valid packets for other virtual routers on the
	// same link; they are not errors.
	OtherVRID uint64
	Dropped   map[Reason]uint64
}

// Instance is one VRRP virtual router.
type Instance struct {
	mu   *sync.Mutex // shared by a sync group so its members move together
	name string
	cfg  Config
	// authType and auth are what advertisements carry and must carry:
	// AuthPass and the password, or 0 and zeros.
	authType uint8
	auth     [8]byte
	vips     []netip.Addr // sorted, for comparing advertised lists
	dsts     []netip.Addr
	unit     uint16 // own advert interval in the version's unit

	conn            Conn
	clock           clock.Clock
	log             *slog.Logger
	onChange        func(Event)
	onLowerPriority func()
	group           *Group

	state        State
	masterAdvInt time.Duration // v3: learned from the master
	// lastSrc sent the last advertisement accepted: with
	// SkipCheckAdvAddr its address list is not checked.
	lastSrc      netip.Addr
	lastMismatch time.Duration
	timer        clock.Timer
	timerGen     uint64
	preemptAt    time.Time
	ifDown       map[string]bool
	scriptDown   map[string]bool
	stats        Stats
	stopped      chan struct{}
	// quiet marks the events of a resumed instance taking the state its
	// predecessor had as Resumed.
	quiet bool
}

// New builds an instance from its configuration.
func New(cfg Config, opt Options) (*Instance, error) {
	name := "vrrp_instance " + cfg.Name
	if opt.Conn == nil {
		return nil, fmt.Errorf("%s: no connection", name)
	}
	unit, err := advertUnits(cfg.Version, cfg.AdvertInt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	local := opt.Conn.LocalAddr()
	i := &Instance{
		mu: new(sync.Mutex), name: cfg.Name, cfg: cfg, unit: unit,
		conn: opt.Conn, clock: opt.Clock, log: opt.Logger, onChange: opt.OnChange, onLowerPriority: opt.OnLowerPriority,
		masterAdvInt: cfg.AdvertInt,
		ifDown:       map[string]bool{}, scriptDown: map[string]bool{},
		stats:   Stats{Dropped: map[Reason]uint64{}},
		stopped: make(chan struct{}),
	}
	for _, a := range cfg.Addrs {
		if a.Is6() != local.Is6() {
			return nil, fmt.Errorf("%s: virtual_ipaddress %s is not of the family of the source address %s", name, a, local)
		}
		i.vips = append(i.vips, a)
	}
	slices.SortFunc(i.vips, netip.Addr.Compare)
	if cfg.PassAuth {
		i.authType = AuthPass
		copy(i.auth[:], cfg.Password)
	}
	i.dsts = cfg.UnicastPeers
	if len(i.dsts) == 0 {
		i.dsts = []netip.Addr{Group4}
		if local.Is6() {
			i.dsts = []netip.Addr{Group6}
		}
	}
	if i.clock == nil {
		i.clock = clock.Real{}
	}
	if i.log == nil {
		i.log = slog.Default()
	}
	i.log = i.log.With("vrrp_instance", cfg.Name)
	if i.onLowerPriority == nil {
		i.onLowerPriority = func() {}
	}
	if i.onChange == nil {
		i.onChange = func(Event) {}
	}
	if g := opt.Group; g != nil {
		if !slices.Contains(g.cfg.Instances, cfg.Name) {
			return nil, fmt.Errorf("%s: not a member of vrrp_sync_group %s", name, g.cfg.Name)
		}
		g.mu.Lock()
		g.members = append(g.members, i)
		g.mu.Unlock()
		i.mu = &g.mu
		i.group = g
	}
	return i, nil
}

// Group is a vrrp_sync_group: its members change state together.
type Group struct {
	mu       sync.Mutex
	cfg      GroupConfig
	members  []*Instance
	onChange func(GroupEvent)
}

// NewGroup builds a sync group; instances join it through Options.Group.
// onChange, if not nil, is called for every change of the group's state,
// under the same rules as Options.OnChange.
func NewGroup(cfg GroupConfig, onChange func(GroupEvent)) *Group {
	if onChange == nil {
		onChange = func(GroupEvent) {}
	}
	return &Group{cfg: cfg, onChange: onChange}
}

// Run runs the instance until ctx is done, then stops it gracefully: a
// master announces priority 0 and keeps its addresses until the new
// master is heard (bounded by Master_Down_Interval). Run closes the Conn.
func (i *Instance) Run(ctx context.Context) error {
	i.Start()
	readErr := make(chan error, 1)
	go func() {
		b := make([]byte, 1500)
		for {
			n, src, dst, ttl, err := i.conn.ReadFrom(b)
			if err != nil {
				readErr <- err
				return
			}
			i.Receive(b[:n], src, dst, ttl)
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-readErr:
		err = fmt.Errorf("vrrp_instance %s: read: %w", i.name, err)
	}
	<-i.Stop()
	cerr := i.conn.Close()
	if err == nil {
		if rerr := <-readErr; !errors.Is(rerr, net.ErrClosed) {
			err = errors.Join(cerr, rerr)
		}
	}
	return err
}

// Start leaves Init: to Master at once for the address owner (priority
// 255), else to Backup, or to Fault while a tracked object is down.
// keepalived's "state MASTER" also starts in Backup and wins the election.
func (i *Instance) Start() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.state != StateInit {
		return
	}
	if i.cfg.PreemptDelay > 0 {
		i.preemptAt = i.clock.Now().Add(i.cfg.PreemptDelay)
	}
	i.enterRunning("startup")
}

// Handoff ends the instance for a reload that replaces it with one for the
// same virtual router. Unlike Stop it sends nothing, keeps the addresses
// and runs no notify script, so that the successor can Resume where this
// instance stood without the peers or the link noticing a change. It
// returns that state; Run returns once its context is done.
func (i *Instance) Handoff() State {
	i.mu.Lock()
	defer i.mu.Unlock()
	prev := i.state
	if prev == StateStopped {
		return prev
	}
	i.disarm()
	i.state = StateStopped
	close(i.stopped)
	i.log.Info("handed over for a reload", "state", prev.String())
	return prev
}

// Resume leaves Init in place of an instance that Handoff ended in state
// prev. A master stays master, without the notify scripts: it announces
// its addresses and sends its first advertisement, with the new
// configuration's priority, at once, and the peers elect by the usual
// rules if that priority now loses. Any other state starts afresh, as
// Start does. Call Resume before Run.
func (i *Instance) Resume(prev State) {
	if prev != StateMaster {
		i.Start()
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.state != StateInit {
		return
	}
	if i.faulty() {
		i.enterRunning("reload")
		return
	}
	i.quiet = true
	i.transition(StateMaster, "resumed after reload", false)
	i.quiet = false
}

// Stop begins a graceful stop and returns a channel closed once the
// instance has reached StateStopped.
func (i *Instance) Stop() <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch i.state {
	case StateMaster:
		i.send(PriorityStop)
		i.transition(StateReleasing, "stopping", false)
		i.arm(i.downInterval(), func() { i.transition(StateStopped, "no new master heard within Master_Down_Interval", false) })
	case StateReleasing, StateStopped:
	default:
		i.transition(StateStopped, "stopping", false)
	}
	return i.stopped
}

// State returns the current state.
func (i *Instance) State() State {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state
}

// Priority returns the effective priority: the configured one moved by
// tracked scripts and interfaces.
func (i *Instance) Priority() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.priority()
}

// Stats returns a copy of the packet counters.
func (i *Instance) Stats() Stats {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := i.stats
	s.Dropped = map[Reason]uint64{}
	for r, n := range i.stats.Dropped {
		s.Dropped[r] = n
	}
	return s
}

// SetInterface records the link state of a tracked interface.
func (i *Instance) SetInterface(name string, up bool) {
	i.setTrack(i.cfg.TrackInterfaces, i.ifDown, name, !up, "track_interface "+name)
}

// SetScript records the result of a tracked vrrp_script.
func (i *Instance) SetScript(name string, ok bool) {
	i.setTrack(i.cfg.TrackScripts, i.scriptDown, name, !ok, "track_script "+name)
}

func (i *Instance) setTrack(tracks []Track, down map[string]bool, name string, isDown bool, what string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !slices.ContainsFunc(tracks, func(t Track) bool { return t.Name == name }) || down[name] == isDown {
		return
	}
	down[name] = isDown
	state := "up"
	if isDown {
		state = "down"
	}
	i.log.Info("tracked object changed", "object", what, "state", state, "priority", i.priority())
	i.reevaluate(what + " " + state)
}

// reevaluate moves the instance into or out of Fault after a tracked
// object changed; priority changes alone take effect in the next
// advertisement, as in keepalived.
func (i *Instance) reevaluate(reason string) {
	switch i.state {
	case StateBackup, StateMaster:
		if i.faulty() {
			i.transition(StateFault, reason, false)
		} else if i.state == StateBackup && i.priority() == PriorityOwner {
			i.transition(StateMaster, reason, false)
		}
	case StateFault:
		if i.group != nil {
			for _, m := range i.group.members {
				if m.state == StateFault && m.faulty() {
					return
				}
			}
			for _, m := range i.group.members {
				if m.state == StateFault {
					m.enterRunning(reason)
				}
			}
			return
		}
		if !i.faulty() {
			i.enterRunning(reason)
		}
	}
}

// enterRunning leaves Init or Fault.
func (i *Instance) enterRunning(reason string) {
	switch {
	case i.faulty():
		i.transition(StateFault, reason, false)
	case i.priority() == PriorityOwner:
		i.transition(StateMaster, reason+" as address owner", false)
	default:
		i.transition(StateBackup, reason, false)
	}
}

// faulty reports whether a tracked object with weight 0 is down.
func (i *Instance) faulty() bool {
	for _, t := range i.cfg.TrackInterfaces {
		if t.Weight == 0 && i.ifDown[t.Name] {
			return true
		}
	}
	for _, t := range i.cfg.TrackScripts {
		if t.Weight == 0 && i.scriptDown[t.Name] {
			return true
		}
	}
	return false
}

// priority applies keepalived's weights: a positive weight is added while
// the object is up, a negative one added while it is down; the result
// stays within 1..254. The owner's 255 is never moved.
func (i *Instance) priority() int {
	p := i.cfg.Priority
	if p == PriorityOwner {
		return p
	}
	add := func(tracks []Track, down map[string]bool) {
		for _, t := range tracks {
			if t.Weight > 0 && !down[t.Name] || t.Weight < 0 && down[t.Name] {
				p += t.Weight
			}
		}
	}
	add(i.cfg.TrackInterfaces, i.ifDown)
	add(i.cfg.TrackScripts, i.scriptDown)
	return min(max(p, 1), PriorityOwner-1)
}

// skew is RFC 5798's Skew_Time.
func (i *Instance) skew() time.Duration {
	return time.Duration(256-i.priority()) * i.masterAdvInt / 256
}

// downInterval is Master_Down_Interval.
func (i *Instance) downInterval() time.Duration { return 3*i.masterAdvInt + i.skew() }

// arm replaces the instance's single timer. The generation check drops a
// callback that fired while a newer timer was being armed.
func (i *Instance) arm(d time.Duration, f func()) {
	if i.timer != nil {
		i.timer.Stop()
	}
	i.timerGen++
	gen := i.timerGen
	i.timer = i.clock.AfterFunc(d, func() {
		i.mu.Lock()
		defer i.mu.Unlock()
		if gen == i.timerGen {
			f()
		}
	})
}

func (i *Instance) disarm() {
	if i.timer != nil {
		i.timer.Stop()
		i.timer = nil
	}
	i.timerGen++
}

// transition changes state, runs the state's entry actions and, unless the
// change came from the sync group, drags the group's other members along.
func (i *Instance) transition(to State, reason string, fromGroup bool) {
	from := i.state
	if from == to || from == StateStopped {
		return
	}
	i.state = to
	prio := i.priority()
	i.log.Info("state change", "from", from.String(), "to", to.String(), "priority", prio, "reason", reason)
	ev := Event{Instance: i.name, From: from, To: to, Priority: prio, Reason: reason, Resumed: i.quiet}
	notified := false
	switch to {
	case StateBackup:
		i.masterAdvInt = i.cfg.AdvertInt
		i.arm(i.downInterval(), i.masterDown)
	case StateMaster:
		i.preemptAt = time.Time{}
		// The caller takes the addresses and sends gratuitous ARP before
		// the first advertisement goes out: a releasing master lets go
		// of the addresses, and stops forwarding, when it hears that
		// advertisement, and by then the link's ARP caches must already
		// point here or the frames in between are lost.
		i.onChange(ev)
		notified = true
		i.send(prio)
		i.arm(i.cfg.AdvertInt, i.advertise)
	case StateFault:
		if from == StateMaster {
			// Let the backups take over after their skew time rather than
			// a full Master_Down_Interval, as keepalived does.
			i.send(PriorityStop)
		}
		i.disarm()
	case StateStopped:
		i.disarm()
	}
	if !notified {
		i.onChange(ev)
	}
	if to == StateStopped {
		close(i.stopped)
	}
	if fromGroup || i.group == nil || to == StateReleasing || to == StateStopped {
		return
	}
	for _, m := range i.group.members {
		switch {
		case m == i, m.state == to, m.state == StateInit, m.state == StateStopped, m.state == StateReleasing:
		case m.state == StateFault && to != StateFault:
			// A member leaves Fault only through reevaluate, once no
			// member of the group is faulty.
		default:
			m.transition(to, "vrrp_sync_group "+i.group.cfg.Name+": "+i.name+" is "+to.String(), true)
		}
	}
	i.group.onChange(GroupEvent{Group: i.group.cfg.Name, To: to, Priority: prio, Resumed: i.quiet})
}

func (i *Instance) masterDown() {
	if i.state == StateBackup {
		i.transition(StateMaster, "master down timer expired", false)
	}
}

func (i *Instance) advertise() {
	if i.state != StateMaster {
		return
	}
	i.send(i.priority())
	i.arm(i.cfg.AdvertInt, i.advertise)
}

func (i *Instance) send(prio int) {
	a := Advertisement{
		Version: i.cfg.Version, VRID: i.cfg.VRID, Priority: uint8(prio),
		AdvertInt: i.unit, Addrs: i.vips, AuthType: i.authType, AuthData: i.auth,
	}
	src := i.conn.LocalAddr()
	for _, dst := range i.dsts {
		b, err := a.Marshal(src, dst)
		if err == nil {
			err = i.conn.WriteTo(b, dst)
		}
		if err != nil {
			i.log.Warn("cannot send advertisement", "dst", dst, "err", err)
			continue
		}
		i.stats.Sent++
	}
}

func (i *Instance) drop(r Reason, src netip.Addr, detail string) {
	i.stats.Dropped[r]++
	i.log.Debug("dropped VRRP packet", "src", src, "reason", r.String(), "detail", detail)
}

// Receive handles one packet read from the Conn.
func (i *Instance) Receive(b []byte, src, dst netip.Addr, ttl int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stats.Received++
	a, err := Parse(b, src, dst)
	if err != nil {
		var pe *PacketError
		if errors.As(err, &pe) {
			i.drop(pe.Reason, src, pe.Detail)
		}
		return
	}
	if a.VRID != i.cfg.VRID {
		i.stats.OtherVRID++
		return
	}
	if src == i.conn.LocalAddr() {
		i.drop(ReasonOwnPacket, src, "sent by this host")
		return
	}
	if i.cfg.CheckUnicastSrc && len(i.cfg.UnicastPeers) > 0 && !slices.Contains(i.cfg.UnicastPeers, src) {
		i.drop(ReasonSource, src, "not in unicast_peer")
		return
	}
	if ttl != 255 {
		i.drop(ReasonTTL, src, fmt.Sprintf("ttl %d, want 255", ttl))
		return
	}
	if a.Version != i.cfg.Version {
		i.drop(ReasonVersion, src, fmt.Sprintf("version %d, configured %d", a.Version, i.cfg.Version))
		return
	}
	if a.Version == 2 {
		if a.AuthType != i.authType || i.authType == AuthPass && a.AuthData != i.auth {
			i.drop(ReasonAuth, src, fmt.Sprintf("auth type %d or password does not match", a.AuthType))
			return
		}
	}
	if !slices.Equal(i.vips, sortedAddrs(a.Addrs)) && !(i.cfg.SkipCheckAdvAddr && src == i.lastSrc) {
		i.drop(ReasonAddrList, src, fmt.Sprintf("addresses %v, configured %v", a.Addrs, i.vips))
		return
	}
	if got := a.Interval(); got != i.cfg.AdvertInt && got != i.lastMismatch {
		i.log.Warn("advertisement interval mismatch", "src", src, "interval", got, "configured", i.cfg.AdvertInt)
		i.lastMismatch = got
	}
	if a.Version == 2 && a.AdvertInt != i.unit {
		// keepalived drops these; v3 learns the master's interval instead.
		i.drop(ReasonInterval, src, fmt.Sprintf("interval %d s, configured %d s", a.AdvertInt, i.unit))
		return
	}
	i.lastSrc = src
	i.advertisement(a, src)
}

func sortedAddrs(a []netip.Addr) []netip.Addr {
	s := slices.Clone(a)
	slices.SortFunc(s, netip.Addr.Compare)
	return s
}

// advertisement applies a valid advertisement for this VRID (RFC 5798
// §6.4.2, §6.4.3).
func (i *Instance) advertisement(a *Advertisement, src netip.Addr) {
	prio := i.priority()
	switch i.state {
	case StateBackup:
		if a.Priority == PriorityStop {
			i.arm(i.skew(), i.masterDown)
			return
		}
		lower := int(a.Priority) < prio
		if lower && i.cfg.Preempt {
			now := i.clock.Now()
			if i.cfg.PreemptDelay > 0 && i.preemptAt.IsZero() {
				i.preemptAt = now.Add(i.cfg.PreemptDelay)
			}
			if !now.Before(i.preemptAt) {
				// Preempt: let the down timer run out.
				return
			}
		}
		if !lower {
			i.preemptAt = time.Time{}
		}
		if i.cfg.Version == 3 {
			i.masterAdvInt = a.Interval()
		}
		i.arm(i.downInterval(), i.masterDown)
	case StateMaster:
		switch {
		case a.Priority == PriorityStop:
			i.send(prio)
			i.arm(i.cfg.AdvertInt, i.advertise)
		case int(a.Priority) > prio || int(a.Priority) == prio && src.Compare(i.conn.LocalAddr()) > 0:
			if i.cfg.HigherPrioSendAdvert {
				i.send(prio)
			}
			i.transition(StateBackup, fmt.Sprintf("advertisement from %s with priority %d", src, a.Priority), false)
			if i.cfg.Version == 3 {
				// transition reset it to our own; the master's is what counts.
				i.masterAdvInt = a.Interval()
				i.arm(i.downInterval(), i.masterDown)
			}
		default:
			// Two masters: assert ourselves at once rather than waiting
			// for the next interval, as keepalived does, and have the
			// link's ARP caches point here again if so configured.
			if !i.cfg.LowerPrioNoAdvert {
				i.send(prio)
				i.arm(i.cfg.AdvertInt, i.advertise)
			}
			if i.cfg.LowerPrioReannounce {
				i.onLowerPriority()
			}
		}
	case StateReleasing:
		if a.Priority != PriorityStop {
			i.transition(StateStopped, fmt.Sprintf("new master %s heard", src), false)
		}
	}
}
