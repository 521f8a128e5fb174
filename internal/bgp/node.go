package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/clock"
	"github.com/xlb-project/xlb/internal/service"
)

// Route is one VIP as announced.
type Route struct {
	Prefix      netip.Prefix
	Communities []service.Community
	MED         uint32
	// LocalPref, when set, is sent to iBGP peers (eBGP peers never see
	// it): a leaving VIP carries 0, as RFC 8326 asks receivers to apply.
	LocalPref *uint32
}

// Speaker is the BGP implementation a Node drives: GoBGP (NewGoBGP), or a
// fake in tests.
type Speaker interface {
	// Start opens the speaker with b's global settings and peers.
	Start(ctx context.Context, b *service.BGP) error
	// SetPeers makes the sessions those of b: new peers are added,
	// missing ones removed, changed ones replaced.
	SetPeers(ctx context.Context, b *service.BGP) error
	// Announce adds r, or replaces the route of its prefix.
	Announce(ctx context.Context, r Route) error
	// Withdraw withdraws the prefix.
	Withdraw(ctx context.Context, p netip.Prefix) error
	// Peers reports every session.
	Peers(ctx context.Context) ([]api.BGPPeer, error)
	// Stop closes every session (a NOTIFICATION Cease each) and the
	// speaker.
	Stop(ctx context.Context) error
}

// Health is what a Node needs of the health checker.
type Health interface {
	Up(svc service.ServiceKey, be netip.AddrPort) bool
}

// Quorums is what a Node needs of the reconciler: the quorum states and
// the digest of the tables its last apply served.
type Quorums interface {
	HoldsQuorum(key service.ServiceKey) bool
	Digest() string
}

// allUp is the health of a daemon without checks.
type allUp struct{}

func (allUp) Up(service.ServiceKey, netip.AddrPort) bool { return true }

// opTimeout bounds one call into the speaker.
const opTimeout = 5 * time.Second

// Node announces the VIPs of a configuration over BGP (see Decide). Its
// methods are safe for concurrent use, and a Node without a bgp section
// does nothing until a reload brings one.
type Node struct {
	log        *slog.Logger
	clock      clock.Clock
	newSpeaker func(*slog.Logger) Speaker

	mu       sync.Mutex
	cfg      *service.BGP
	sp       Speaker // nil until started
	attached bool
	draining bool
	stopping bool
	facts    []ServiceFacts
	digest   string
	vips     map[netip.Addr]*vip
	// alive is when the daemon's loop last said so (Alive); stalled is
	// set once it has not for LivenessTimeout.
	alive    time.Time
	stalled  bool
	watchdog clock.Timer
}

// LivenessTimeout is how long the daemon's event loop may go without
// calling Alive before the VIPs are withdrawn: a wedged daemon keeps the
// BGP sessions up (GoBGP runs on its own), but nothing it serves is kept
// up to date any more.
const LivenessTimeout = 10 * time.Second

// vip is one VIP's announcement state.
type vip struct {
	action Action
	reason string
	route  Route // as announced, while announced or leaving
	leave  clock.Timer
}

// Options are a Node's seams; the zero value is production: GoBGP on the
// wall clock.
type Options struct {
	Speaker func(*slog.Logger) Speaker
	Clock   clock.Clock
}

// Prepare builds the node of cfg without touching the network: nothing is
// sent before Start.
func Prepare(cfg *service.Config, log *slog.Logger, opts Options) *Node {
	if opts.Speaker == nil {
		opts.Speaker = NewGoBGP
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	return &Node{log: log.With("component", "bgp"), clock: opts.Clock, newSpeaker: opts.Speaker, cfg: cfg.BGP, vips: map[netip.Addr]*vip{}}
}

// Start opens the sessions once the program forwards: from now on a VIP
// this balancer can serve is announced.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attached = true
	n.alive = n.clock.Now()
	n.watchLocked()
	if err := n.startLocked(); err != nil {
		return err
	}
	n.reconcileLocked()
	return nil
}

// Alive tells the node that the daemon's event loop turns; the daemon
// calls it every few seconds (well within LivenessTimeout).
func (n *Node) Alive() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.alive = n.clock.Now()
	if n.stalled {
		n.stalled = false
		n.log.Info("bgp: the daemon's event loop turns again")
		n.reconcileLocked()
	}
}

// watchLocked checks, every half LivenessTimeout, that Alive was called.
func (n *Node) watchLocked() {
	n.watchdog = n.clock.AfterFunc(LivenessTimeout/2, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.stopping {
			return
		}
		if !n.stalled && n.clock.Now().Sub(n.alive) >= LivenessTimeout {
			n.stalled = true
			n.log.Error("bgp: the daemon's event loop has stalled: withdrawing the VIPs", "last_alive", n.alive)
			n.reconcileLocked()
		}
		n.watchLocked()
	})
}

func (n *Node) startLocked() error {
	if n.cfg == nil || n.sp != nil {
		return nil
	}
	sp := n.newSpeaker(n.log)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := sp.Start(ctx, n.cfg); err != nil {
		return fmt.Errorf("bgp: start the speaker (as %d, router id %s): %w", n.cfg.LocalAS, n.cfg.RouterID, err)
	}
	n.sp = sp
	n.log.Info("bgp speaker started", "local_as", n.cfg.LocalAS, "router_id", n.cfg.RouterID, "peers", len(n.cfg.Peers))
	return nil
}

// Abort undoes a Start of a daemon whose start failed: the sessions close
// without a graceful leave, as nothing was served.
func (n *Node) Abort() {
	n.mu.Lock()
	sp := n.sp
	n.sp = nil
	if n.watchdog != nil {
		n.watchdog.Stop()
	}
	n.mu.Unlock()
	if sp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = sp.Stop(ctx)
	}
}

// Served tells the node what the daemon serves after an apply: the
// configuration, the real servers' health and the quorums. A changed bgp
// section takes effect here (peers are added, removed or replaced; a new
// local AS or router id needs a restart and is logged); VIPs follow
// Decide.
func (n *Node) Served(cfg *service.Config, h Health, q Quorums) {
	if h == nil {
		h = allUp{}
	}
	facts := make([]ServiceFacts, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		live := slices.ContainsFunc(s.Backends, func(b service.Backend) bool { return h.Up(s.Key(), b.AddrPort()) })
		facts = append(facts, ServiceFacts{Key: s.Key(), Live: live, Quorum: q.HoldsQuorum(s.Key()), Sorry: s.SorryServer != nil})
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.facts = facts
	if d := q.Digest(); d != n.digest {
		// Balancers that share a VIP must build the same tables: a
		// changed digest is worth a line to compare between them.
		n.log.Info("serving tables", "digest", d)
		n.digest = d
	}
	n.reconfigureLocked(cfg.BGP)
	n.reconcileLocked()
}

func (n *Node) reconfigureLocked(b *service.BGP) {
	old := n.cfg
	switch {
	case b == nil && old == nil:
		return
	case old != nil && b != nil && (old.LocalAS != b.LocalAS || old.RouterID != b.RouterID || old.ListenPort != b.ListenPort):
		n.log.Error("bgp: local_as, router_id and listen_port change only with a restart; the running ones stay", "local_as", old.LocalAS, "router_id", old.RouterID)
		b2 := *b
		b2.LocalAS, b2.RouterID, b2.ListenPort = old.LocalAS, old.RouterID, old.ListenPort
		b = &b2
	}
	n.cfg = b
	if b == nil {
		// The section is gone: the VIPs leave as a stop makes them; the
		// idle sessions stay until the daemon stops.
		return
	}
	if n.sp == nil {
		if n.attached {
			if err := n.startLocked(); err != nil {
				n.log.Error("bgp: start", "err", err)
			}
		}
		return
	}
	if old != nil && sessionsEqual(old, b) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := n.sp.SetPeers(ctx, b); err != nil {
		n.log.Error("bgp: update the peers", "err", err)
	}
}

// sessionsEqual reports whether a and b configure the same sessions: the
// same peers and timers, wherever they were written.
func sessionsEqual(a, b *service.BGP) bool {
	strip := func(x *service.BGP) any {
		peers := slices.Clone(x.Peers)
		for i := range peers {
			peers[i].Source = service.Pos{}
		}
		return []any{peers, x.HoldTime, x.KeepaliveTime, x.ConnectRetry}
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// Drain makes every VIP leave gracefully and stay withdrawn (on), or
// serves them again (off): `xlb drain-bgp` before maintenance.
func (n *Node) Drain(on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cfg == nil {
		return errors.New("bgp: no bgp section configured")
	}
	n.draining = on
	n.log.Info("bgp drain", "on", on)
	n.reconcileLocked()
	return nil
}

// Stop leaves gracefully: every announced VIP is re-announced with
// GRACEFUL_SHUTDOWN and the lowest preference, the program keeps
// forwarding while the routers move the flows, and after graceful_leave
// the VIPs are withdrawn and the sessions closed. It returns when done.
// With no session established there is nobody to tell, and no wait.
func (n *Node) Stop() {
	n.mu.Lock()
	n.stopping = true
	if n.watchdog != nil {
		n.watchdog.Stop()
	}
	n.reconcileLocked()
	sp, wait := n.sp, time.Duration(0)
	if n.cfg != nil && n.leavingLocked() {
		wait = n.cfg.GracefulLeave
	}
	n.mu.Unlock()
	if sp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if wait > 0 && n.established(ctx, sp) {
		n.log.Info("bgp: leaving gracefully", "wait", wait)
		done := make(chan struct{})
		n.clock.AfterFunc(wait, func() { close(done) })
		<-done
	}
	n.mu.Lock()
	for addr, v := range n.vips {
		if v.leave != nil {
			v.leave.Stop()
		}
		n.withdrawLocked(addr, v, "withdrawn: the balancer stopped")
	}
	n.sp = nil
	n.mu.Unlock()
	if err := sp.Stop(ctx); err != nil {
		n.log.Error("bgp: stop the speaker", "err", err)
	}
	n.log.Info("bgp speaker stopped")
}

func (n *Node) leavingLocked() bool {
	for _, v := range n.vips {
		if v.action == Leave {
			return true
		}
	}
	return false
}

func (n *Node) established(ctx context.Context, sp Speaker) bool {
	peers, err := sp.Peers(ctx)
	return err != nil || slices.ContainsFunc(peers, func(p api.BGPPeer) bool { return p.State == "ESTABLISHED" })
}

// reconcileLocked applies Decide to the speaker.
func (n *Node) reconcileLocked() {
	f := Facts{Attached: n.attached, Stalled: n.stalled, Leaving: n.draining || n.stopping || n.cfg == nil, Services: n.facts}
	var announced []netip.Addr
	for addr, v := range n.vips {
		if v.action != Withdraw {
			announced = append(announced, addr)
		}
	}
	for _, d := range Decide(f, announced) {
		v := n.vips[d.VIP]
		if v == nil {
			v = &vip{action: Withdraw}
			n.vips[d.VIP] = v
		}
		n.applyLocked(d, v)
	}
	// A VIP no service has, withdrawn, is forgotten.
	for addr, v := range n.vips {
		if v.action == Withdraw && !slices.ContainsFunc(n.facts, func(s ServiceFacts) bool { return s.Key.VIP == addr }) {
			delete(n.vips, addr)
		}
	}
}

func (n *Node) applyLocked(d Decision, v *vip) {
	if d.Action != Leave && v.leave != nil {
		v.leave.Stop()
		v.leave = nil
	}
	switch d.Action {
	case Announce, AnnounceSorry:
		r := n.route(d.VIP, d.Action == AnnounceSorry)
		if v.action == d.Action && routeEqual(v.route, r) {
			v.reason = d.Reason
			return
		}
		if n.sp != nil {
			if err := n.announce(r); err != nil {
				n.log.Error("bgp: announce", "vip", d.VIP, "err", err)
				return
			}
			n.log.Info("bgp: announced", "vip", d.VIP, "med", r.MED, "reason", d.Reason)
		}
		v.action, v.reason, v.route = d.Action, d.Reason, r
		if n.sp == nil {
			// Not announced before Start: state it so.
			v.action, v.reason = Withdraw, "withdrawn: the speaker has not started"
		}
	case Leave:
		if v.action == Withdraw || v.action == Leave {
			if v.action == Withdraw {
				v.reason = d.Reason
			}
			return
		}
		if n.sp == nil {
			v.action, v.reason, v.route = Withdraw, "withdrawn: the speaker has stopped", Route{}
			return
		}
		r := v.route
		r.Communities = append(slices.Clone(r.Communities), service.GracefulShutdown)
		r.MED = math.MaxUint32
		zero := uint32(0)
		r.LocalPref = &zero
		if err := n.announce(r); err != nil {
			n.log.Error("bgp: announce graceful shutdown", "vip", d.VIP, "err", err)
		}
		v.action, v.reason, v.route = Leave, d.Reason, r
		wait := service.DefaultBGPGracefulLeave
		if n.cfg != nil {
			wait = n.cfg.GracefulLeave
		}
		addr := d.VIP
		n.log.Info("bgp: leaving", "vip", addr, "withdraw_in", wait, "reason", d.Reason)
		v.leave = n.clock.AfterFunc(wait, func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if cur := n.vips[addr]; cur == v && v.action == Leave {
				v.leave = nil
				n.withdrawLocked(addr, v, "withdrawn: left gracefully")
			}
		})
	case Withdraw:
		if v.action == Withdraw {
			v.reason = d.Reason
			return
		}
		n.withdrawLocked(d.VIP, v, d.Reason)
	}
}

func (n *Node) withdrawLocked(addr netip.Addr, v *vip, reason string) {
	if v.action != Withdraw && n.sp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := n.sp.Withdraw(ctx, netip.PrefixFrom(addr, addr.BitLen())); err != nil {
			n.log.Error("bgp: withdraw", "vip", addr, "err", err)
		} else {
			n.log.Info("bgp: withdrawn", "vip", addr, "reason", reason)
		}
	}
	v.action, v.reason, v.route = Withdraw, reason, Route{}
}

func (n *Node) announce(r Route) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return n.sp.Announce(ctx, r)
}

// route is the route of vip: its prefix, communities and MED.
func (n *Node) route(addr netip.Addr, sorry bool) Route {
	comms, med := n.cfg.Attrs(addr)
	if sorry {
		med += SorryMEDPenalty
	}
	return Route{Prefix: netip.PrefixFrom(addr, addr.BitLen()), Communities: slices.Clone(comms), MED: med}
}

func routeEqual(a, b Route) bool {
	return a.Prefix == b.Prefix && slices.Equal(a.Communities, b.Communities) && a.MED == b.MED && (a.LocalPref == nil) == (b.LocalPref == nil)
}

// State is the node as `xlb bgp` shows it; nil without a bgp section.
func (n *Node) State() *api.BGP {
	n.mu.Lock()
	cfg, sp := n.cfg, n.sp
	st := &api.BGP{Draining: n.draining, Digest: n.digest}
	for addr, v := range n.vips {
		bv := api.BGPVIP{VIP: addr.String(), State: v.action.String(), Reason: v.reason, MED: v.route.MED}
		for _, c := range v.route.Communities {
			bv.Communities = append(bv.Communities, c.String())
		}
		st.VIPs = append(st.VIPs, bv)
	}
	n.mu.Unlock()
	if cfg == nil {
		return nil
	}
	st.LocalAS, st.RouterID = cfg.LocalAS, cfg.RouterID.String()
	slices.SortFunc(st.VIPs, func(a, b api.BGPVIP) int {
		return netip.MustParseAddr(a.VIP).Compare(netip.MustParseAddr(b.VIP))
	})
	if sp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		peers, err := sp.Peers(ctx)
		if err != nil {
			n.log.Error("bgp: list the peers", "err", err)
		}
		st.Peers = peers
	}
	return st
}
