package vrrp

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/clock/clocktest"
)

type fakeClock = clocktest.Fake

func newFakeClock() *fakeClock { return clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

type sent struct {
	dst netip.Addr
	adv *Advertisement
}

// fakeConn records what the instance sends and feeds Run's reader.
type fakeConn struct {
	t     *testing.T
	local netip.Addr
	mu    sync.Mutex
	out   []sent
	in    chan inPacket
	read  chan struct{} // a value each time ReadFrom starts waiting
	done  chan struct{}
	once  sync.Once
}

type inPacket struct {
	b        []byte
	src, dst netip.Addr
	ttl      int
}

func newFakeConn(t *testing.T, local netip.Addr) *fakeConn {
	return &fakeConn{t: t, local: local, in: make(chan inPacket), read: make(chan struct{}, 1), done: make(chan struct{})}
}

func (c *fakeConn) ReadFrom(b []byte) (int, netip.Addr, netip.Addr, int, error) {
	select {
	case c.read <- struct{}{}:
	default:
	}
	select {
	case p := <-c.in:
		return copy(b, p.b), p.src, p.dst, p.ttl, nil
	case <-c.done:
		return 0, netip.Addr{}, netip.Addr{}, 0, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, dst netip.Addr) error {
	a, err := Parse(b, c.local, dst)
	if err != nil {
		c.t.Errorf("instance sent an invalid packet %x: %v", b, err)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, sent{dst, a})
	return nil
}

func (c *fakeConn) LocalAddr() netip.Addr { return c.local }

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

// take returns and forgets what was sent so far.
func (c *fakeConn) take() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.out
	c.out = nil
	return out
}

// priorities lists the priorities of what was sent so far and forgets it.
func (c *fakeConn) priorities() []int {
	var p []int
	for _, s := range c.take() {
		p = append(p, int(s.adv.Priority))
	}
	return p
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []Event
	groups []GroupEvent
	// notes are the changes a caller runs notify scripts for: all but
	// the resumed ones.
	notes []string
}

func (r *recorder) onChange(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	if !e.Resumed {
		r.notes = append(r.notes, "INSTANCE "+e.Instance+" "+e.To.String())
	}
}

func (r *recorder) onGroup(e GroupEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groups = append(r.groups, e)
	if !e.Resumed {
		r.notes = append(r.notes, "GROUP "+e.Group+" "+e.To.String())
	}
}

// states lists "instance:STATE" for each change so far and forgets them.
func (r *recorder) states() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.events {
		s = append(s, e.Instance+":"+e.To.String())
	}
	r.events = nil
	return s
}

// groupStates lists "group:STATE" for each change of a sync group so far
// and forgets them.
func (r *recorder) groupStates() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.groups {
		s = append(s, e.Group+":"+e.To.String())
	}
	r.groups = nil
	return s
}

// takeNotes returns and forgets the changes reported for notify scripts.
func (r *recorder) takeNotes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.notes
	r.notes = nil
	return n
}

// baseConfig is a v3 IPv4 instance with a one-second interval and priority 100.
func baseConfig() Config {
	return Config{
		Name: "VI_1", VRID: 51, Priority: 100,
		AdvertInt: time.Second, Version: 3, Preempt: true,
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")},
	}
}

var (
	self  = netip.MustParseAddr("198.51.100.2")
	lower = netip.MustParseAddr("198.51.100.1") // a peer whose address loses ties
	upper = netip.MustParseAddr("198.51.100.3") // a peer whose address wins ties
)

type harness struct {
	t     *testing.T
	clock *fakeClock
	conn  *fakeConn
	rec   *recorder
	inst  *Instance
}

func newHarness(t *testing.T, cfg Config, group *Group, rec *recorder, clock *fakeClock) *harness {
	t.Helper()
	if rec == nil {
		rec = &recorder{}
	}
	if clock == nil {
		clock = newFakeClock()
	}
	local := self
	if cfg.Addrs[0].Is6() {
		local = ll1
	}
	h := &harness{t: t, clock: clock, conn: newFakeConn(t, local), rec: rec}
	inst, err := New(cfg, Options{Conn: h.conn, Clock: clock, Logger: quiet, OnChange: rec.onChange, Group: group})
	if err != nil {
		t.Fatal(err)
	}
	h.inst = inst
	return h
}

// advert builds a packet as a peer at src with prio would send it, for the
// instance's configuration.
func (h *harness) advert(src netip.Addr, prio int, mod ...func(*Advertisement)) []byte {
	h.t.Helper()
	cfg := h.inst.cfg
	a := Advertisement{Version: cfg.Version, VRID: cfg.VRID, Priority: uint8(prio), AdvertInt: h.inst.unit, Addrs: h.inst.vips}
	if cfg.PassAuth {
		a.AuthType, a.AuthData = AuthPass, pass(cfg.Password)
	}
	for _, m := range mod {
		m(&a)
	}
	b, err := a.Marshal(src, h.inst.dsts[0])
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) recv(src netip.Addr, prio int, mod ...func(*Advertisement)) {
	h.t.Helper()
	h.inst.Receive(h.advert(src, prio, mod...), src, h.inst.dsts[0], 255)
}

func (h *harness) wantState(want State) {
	h.t.Helper()
	if got := h.inst.State(); got != want {
		h.t.Fatalf("state %v, want %v", got, want)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
