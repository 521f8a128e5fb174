package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
)

// cmpAddr compares netip values, whose fields cmp cannot see.
var cmpAddr = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

// guard bounds every wait for another goroutine, so that a bug shows up as
// a failure instead of a hung test. It is never a timing assertion.
const guard = 10 * time.Second

var (
	svcA = service.ServiceKey{VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP}
	svcB = service.ServiceKey{VIP: netip.MustParseAddr("192.0.2.11"), Port: 80, Proto: service.TCP}
	rs1  = netip.MustParseAddrPort("198.51.100.1:80")
	rs2  = netip.MustParseAddrPort("198.51.100.2:80")
)

// call is one probe the manager asked the fake prober for.
type call struct {
	ctx   context.Context
	check service.Check
	be    netip.AddrPort
	reply chan reply
}

type reply struct {
	res Result
	err error
}

// fakeProber hands every probe to the test and waits for its answer, or
// for the probe's context to end.
type fakeProber struct{ calls chan *call }

func (p *fakeProber) Probe(ctx context.Context, c service.Check, be netip.AddrPort) (Result, error) {
	cl := &call{ctx: ctx, check: c, be: be, reply: make(chan reply, 1)}
	p.calls <- cl
	select {
	case r := <-cl.reply:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, context.Cause(ctx)
	}
}

// outcome is how the test answers a probe.
type outcome struct {
	fail   bool
	hang   bool          // never answer: the probe's timeout ends it
	after  time.Duration // answer this long (on the fake clock) after the probe started
	weight *int
}

var (
	pass = outcome{}
	fail = outcome{fail: true}
	hang = outcome{hang: true}
)

func slow(d time.Duration, o outcome) outcome { o.after = d; return o }

// probeRec is one probe as the test saw it.
type probeRec struct {
	At    time.Duration // since the start of the test
	Check string        // kind, and URL path for HTTP
	Be    netip.AddrPort
}

// eventRec is one event as the test saw it.
type eventRec struct {
	At      time.Duration
	Backend netip.AddrPort
	Up      bool
	Weight  *int
}

// harness drives a Manager with a fake clock and a fake prober: it moves
// the clock from timer to timer, answers each probe with respond, and
// waits after each move until the manager has handled everything it
// triggered, so that every probe time and event is exact.
type harness struct {
	t       *testing.T
	clk     *fakeClock
	p       *fakeProber
	m       *Manager
	handled chan struct{}
	start   time.Time
	respond func(c *call, n int) outcome // n counts the probes of the same check and URL, from 0

	seen    int // probes started, as counted by the manager
	waiting []*waitingCall
	counts  map[string]int
	probes  []probeRec
	events  []Event
}

type waitingCall struct {
	c     *call
	fired bool // its slow answer was sent
}

func newHarness(t *testing.T, opts Options, respond func(c *call, n int) outcome) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		clk:     newFakeClock(),
		p:       &fakeProber{calls: make(chan *call, 100)},
		handled: make(chan struct{}, 1000),
		respond: respond,
		counts:  map[string]int{},
	}
	h.start = h.clk.Now()
	h.m = newManager(opts, h.clk, h.p, func(time.Duration) time.Duration { return 0 })
	h.m.afterProbe = func() { h.handled <- struct{}{} }
	t.Cleanup(h.m.Close)
	return h
}

func checkName(c service.Check) string {
	if len(c.URLs) == 1 {
		return c.Kind.String() + " " + c.URLs[0].Path
	}
	return c.Kind.String()
}

func (h *harness) elapsed() time.Duration { return h.clk.Now().Sub(h.start) }

// settle answers the probes the last clock move started and waits for the
// manager to handle every outcome it produced.
func (h *harness) settle() {
	h.t.Helper()
	expect := 0
	var still []*waitingCall
	for _, w := range h.waiting {
		if w.fired || w.c.ctx.Err() != nil {
			expect++
		} else {
			still = append(still, w)
		}
	}
	h.waiting = still

	h.m.mu.Lock()
	started := h.m.probes - h.seen
	h.seen = h.m.probes
	h.m.mu.Unlock()
	for range started {
		var c *call
		select {
		case c = <-h.p.calls:
		case <-time.After(guard):
			h.t.Fatalf("at %s: manager started a probe that never reached the prober", h.elapsed())
		}
		name := checkName(c.check)
		key := name + " " + c.be.String()
		n := h.counts[key]
		h.counts[key]++
		h.probes = append(h.probes, probeRec{At: h.elapsed(), Check: name, Be: c.be})
		o := h.respond(c, n)
		r := reply{res: Result{Weight: o.weight}}
		if o.fail {
			r.err = errors.New("refused")
		}
		switch {
		case o.hang:
			h.waiting = append(h.waiting, &waitingCall{c: c})
		case o.after > 0:
			w := &waitingCall{c: c}
			h.waiting = append(h.waiting, w)
			h.clk.AfterFunc(o.after, func() { w.fired = true; c.reply <- r })
		default:
			c.reply <- r
			expect++
		}
	}
	for range expect {
		select {
		case <-h.handled:
		case <-time.After(guard):
			h.t.Fatalf("at %s: manager did not handle a probe outcome", h.elapsed())
		}
	}
	h.drainEvents()
}

func (h *harness) drainEvents() {
	h.t.Helper()
	for {
		h.m.mu.Lock()
		n := h.m.emitted
		h.m.mu.Unlock()
		if len(h.events) >= n {
			return
		}
		select {
		case ev := <-h.m.Events():
			h.events = append(h.events, ev)
		case <-time.After(guard):
			h.t.Fatalf("at %s: event not delivered", h.elapsed())
		}
	}
}

// update calls Update and settles.
func (h *harness) update(targets ...Target) {
	h.t.Helper()
	h.m.Update(targets)
	// Probes cancelled by the update report back; count them.
	h.clk.Advance(0)
	h.settle()
}

// runUntil moves the clock from timer to timer up to end (since the start).
func (h *harness) runUntil(end time.Duration) {
	h.t.Helper()
	for {
		next, ok := h.clk.Next()
		if !ok || next.Sub(h.start) > end {
			h.clk.AdvanceTo(h.start.Add(end))
			h.settle()
			return
		}
		h.clk.AdvanceTo(next)
		h.settle()
	}
}

func (h *harness) eventRecs() []eventRec {
	var out []eventRec
	for _, ev := range h.events {
		out = append(out, eventRec{At: ev.At.Sub(h.start), Backend: ev.Backend, Up: ev.Up, Weight: ev.Weight})
	}
	return out
}

func (h *harness) probeTimes() []time.Duration {
	var out []time.Duration
	for _, p := range h.probes {
		out = append(out, p.At)
	}
	return out
}

// answers answers the n-th probe of every check with outcomes[n], and
// passes once the script is over.
func answers(outcomes ...outcome) func(*call, int) outcome {
	return func(_ *call, n int) outcome {
		if n < len(outcomes) {
			return outcomes[n]
		}
		return pass
	}
}

func tcpCheck(f func(*service.Check)) service.Check {
	c := service.Check{Kind: service.CheckTCP, DelayLoop: s(10), DelayBeforeRetry: s(2), Retry: 1, ConnectTimeout: s(3)}
	if f != nil {
		f(&c)
	}
	return c
}

func down(at time.Duration) eventRec { return eventRec{At: at, Backend: rs1, Up: false} }
func up(at time.Duration) eventRec   { return eventRec{At: at, Backend: rs1, Up: true} }

func ds(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = s(v)
	}
	return out
}

// TestSchedule checks, for each knob, the times at which a backend is
// probed and the events it produces, against keepalived's documented
// behaviour.
func TestSchedule(t *testing.T) {
	misc := func(f func(*service.Check)) service.Check {
		c := service.Check{Kind: service.CheckMisc, MiscPath: "/bin/true", DelayLoop: s(10), DelayBeforeRetry: s(3), MiscTimeout: s(4)}
		if f != nil {
			f(&c)
		}
		return c
	}
	tests := []struct {
		name       string
		check      service.Check
		outcomes   []outcome
		until      time.Duration
		wantProbes []time.Duration
		wantEvents []eventRec
	}{
		{
			name:  "delay_loop 10, retry 1, delay_before_retry 2",
			check: tcpCheck(nil), outcomes: []outcome{pass, fail, fail, fail, fail, pass}, until: s(40),
			wantProbes: ds(0, 10, 12, 22, 24, 34),
			wantEvents: []eventRec{down(s(12)), up(s(34))},
		},
		{
			name:  "delay_loop 5",
			check: tcpCheck(func(c *service.Check) { c.DelayLoop = s(5) }), outcomes: []outcome{pass, fail, fail}, until: s(11),
			wantProbes: ds(0, 5, 7),
			wantEvents: []eventRec{down(s(7))},
		},
		{
			name:  "retry 0",
			check: tcpCheck(func(c *service.Check) { c.Retry = 0 }), outcomes: []outcome{pass, fail, pass}, until: s(25),
			wantProbes: ds(0, 10, 20),
			wantEvents: []eventRec{down(s(10)), up(s(20))},
		},
		{
			name:  "retry 3, delay_before_retry 5",
			check: tcpCheck(func(c *service.Check) { c.Retry = 3; c.DelayBeforeRetry = s(5) }), outcomes: []outcome{pass, fail, fail, fail, fail}, until: s(30),
			wantProbes: ds(0, 10, 15, 20, 25),
			wantEvents: []eventRec{down(s(25))},
		},
		{
			name:  "connect_timeout 3: a probe that never answers fails at 3s, and the next waits from its end",
			check: tcpCheck(nil), outcomes: []outcome{pass, hang, hang}, until: s(30),
			wantProbes: ds(0, 10, 15, 28),
			wantEvents: []eventRec{down(s(18)), up(s(28))},
		},
		{
			name:  "connect_timeout 7",
			check: tcpCheck(func(c *service.Check) { c.ConnectTimeout = s(7) }), outcomes: []outcome{pass, hang, hang}, until: s(40),
			wantProbes: ds(0, 10, 19, 36),
			wantEvents: []eventRec{down(s(26)), up(s(36))},
		},
		{
			name:  "a slow answer within connect_timeout counts, and tcp waits from the probe's end",
			check: tcpCheck(nil), outcomes: []outcome{slow(s(2), pass), slow(s(2), fail), fail}, until: s(20),
			wantProbes: ds(0, 12, 16),
			wantEvents: []eventRec{down(s(16))},
		},
		{
			name:  "startup: the first failure takes the backend down without retries",
			check: tcpCheck(nil), outcomes: []outcome{fail, pass}, until: s(15),
			wantProbes: ds(0, 10),
			wantEvents: []eventRec{down(0), up(s(10))},
		},
		{
			name:  "misc: retry 0, runs timed from their start",
			check: misc(nil), outcomes: []outcome{slow(s(2), pass), slow(s(2), fail), pass}, until: s(25),
			wantProbes: ds(0, 10, 20),
			wantEvents: []eventRec{down(s(12)), up(s(20))},
		},
		{
			name:  "misc: misc_timeout 4 ends a hung script",
			check: misc(nil), outcomes: []outcome{pass, hang, pass}, until: s(25),
			wantProbes: ds(0, 10, 20),
			wantEvents: []eventRec{down(s(14)), up(s(20))},
		},
		{
			name:  "misc: without misc_timeout, delay_loop bounds the script",
			check: misc(func(c *service.Check) { c.MiscTimeout = 0; c.DelayLoop = s(6) }), outcomes: []outcome{pass, hang, fail}, until: s(13),
			wantProbes: ds(0, 6, 12),
			wantEvents: []eventRec{down(s(12))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{}, answers(tt.outcomes...))
			h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{tt.check}})
			h.runUntil(tt.until)
			if diff := cmp.Diff(tt.wantProbes, h.probeTimes()); diff != "" {
				t.Errorf("probe times (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEvents, h.eventRecs(), cmpAddr); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReloadAddedTargetRetries: a target added after startup is not at
// startup: its first failure is retried.
func TestReloadAddedTargetRetries(t *testing.T) {
	h := newHarness(t, Options{}, func(c *call, n int) outcome {
		if c.be == rs2 {
			return fail
		}
		return pass
	})
	c := tcpCheck(nil)
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}})
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}}, Target{Service: svcA, Backend: rs2, Checks: []service.Check{c}})
	h.runUntil(s(5))
	want := []eventRec{{At: s(2), Backend: rs2, Up: false}}
	if diff := cmp.Diff(want, h.eventRecs(), cmpAddr); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestHTTPWalksURLs(t *testing.T) {
	c := service.Check{Kind: service.CheckHTTP, DelayLoop: s(10), DelayBeforeRetry: s(3), Retry: 1, ConnectTimeout: s(2),
		URLs: []service.URL{{Path: "/a"}, {Path: "/b"}}}
	// /b fails from 30s to 60s.
	h := newHarness(t, Options{}, func(c *call, n int) outcome {
		at := c.check.URLs[0].Path
		if at == "/b" && n >= 1 && n <= 3 {
			return fail
		}
		return pass
	})
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}})
	h.runUntil(s(90))
	var got []string
	for _, p := range h.probes {
		got = append(got, fmt.Sprintf("%ds %s", int(p.At.Seconds()), p.Check))
	}
	want := []string{
		"0s http /a", "10s http /b", "20s http /a",
		"30s http /b", "33s http /b", // down at 33s after one retry
		"43s http /b",                // still failing
		"53s http /b",                // answers: walk again
		"63s http /a", "73s http /b", // up at 73s
		"83s http /a",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("probes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]eventRec{down(s(33)), up(s(73))}, h.eventRecs(), cmpAddr); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestAllChecksMustPass(t *testing.T) {
	tcp := tcpCheck(func(c *service.Check) { c.Retry = 0 })
	misc := service.Check{Kind: service.CheckMisc, MiscPath: "/bin/true", DelayLoop: s(10), MiscTimeout: s(4)}
	// Both fail at 20s; misc passes again at 30s, tcp only at 40s.
	h := newHarness(t, Options{}, func(c *call, n int) outcome {
		switch {
		case c.check.Kind == service.CheckMisc && n == 2,
			c.check.Kind == service.CheckTCP && (n == 2 || n == 3):
			return fail
		}
		return pass
	})
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{tcp, misc}})
	h.runUntil(s(45))
	if diff := cmp.Diff([]eventRec{down(s(20)), up(s(40))}, h.eventRecs(), cmpAddr); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if len(h.probes) != 10 {
		t.Errorf("%d probes, want 10 (5 of each check)", len(h.probes))
	}
}

func TestWarmup(t *testing.T) {
	c := tcpCheck(func(c *service.Check) { c.Warmup = s(7) })
	t.Run("the chosen delay comes first", func(t *testing.T) {
		var asked []time.Duration
		h := newHarness(t, Options{}, answers())
		h.m.warmup = func(max time.Duration) time.Duration { asked = append(asked, max); return max }
		h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}})
		h.runUntil(s(20))
		if diff := cmp.Diff(ds(7, 17), h.probeTimes()); diff != "" {
			t.Errorf("probe times (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(ds(7), asked); diff != "" {
			t.Errorf("warmup asked for (-want +got):\n%s", diff)
		}
	})
	t.Run("the random default stays within warmup", func(t *testing.T) {
		h := newHarness(t, Options{}, answers())
		h.m.warmup = randomWarmup
		var targets []Target
		for i := range 50 {
			targets = append(targets, Target{Service: svcA, Backend: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), 80), Checks: []service.Check{c}})
		}
		h.update(targets...)
		h.runUntil(s(7))
		if len(h.probes) != 50 {
			t.Fatalf("%d first probes within warmup 7s, want 50", len(h.probes))
		}
		spread := map[time.Duration]bool{}
		for _, p := range h.probes {
			spread[p.At] = true
		}
		if len(spread) < 2 {
			t.Errorf("all 50 first probes at the same time %v: warmup does not spread them", h.probes[0].At)
		}
	})
	t.Run("warmup 0 probes at once", func(t *testing.T) {
		h := newHarness(t, Options{}, answers())
		h.m.warmup = randomWarmup
		h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{tcpCheck(nil)}})
		h.runUntil(0)
		if diff := cmp.Diff(ds(0), h.probeTimes()); diff != "" {
			t.Errorf("probe times (-want +got):\n%s", diff)
		}
	})
}

func TestProbeGetsTimeoutCause(t *testing.T) {
	h := newHarness(t, Options{}, answers(hang))
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{tcpCheck(func(c *service.Check) { c.Retry = 0 })}})
	h.runUntil(s(5))
	if len(h.events) != 1 {
		t.Fatalf("got %d events, want 1", len(h.events))
	}
	ev := h.events[0]
	for _, want := range []string{"tcp check of 198.51.100.1:80", "no answer within connect_timeout 3s"} {
		if !strings.Contains(ev.Reason, want) {
			t.Errorf("reason %q does not contain %q", ev.Reason, want)
		}
	}
	if ev.Service != svcA || ev.Backend != rs1 || ev.Up {
		t.Errorf("event %+v, want %s %s down", ev, svcA, rs1)
	}
}

func TestDynamicWeight(t *testing.T) {
	w := func(n int) *int { return &n }
	c := service.Check{Kind: service.CheckMisc, MiscPath: "/bin/true", MiscDynamic: true, DelayLoop: s(10), MiscTimeout: s(4)}
	h := newHarness(t, Options{}, answers(outcome{weight: w(5)}, outcome{weight: w(5)}, pass, outcome{weight: w(9)}, fail))
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}})
	h.runUntil(s(45))
	want := []eventRec{
		{At: 0, Backend: rs1, Up: true, Weight: w(5)},
		{At: s(30), Backend: rs1, Up: true, Weight: w(9)},
		{At: s(40), Backend: rs1, Up: false, Weight: w(9)},
	}
	if diff := cmp.Diff(want, h.eventRecs(), cmpAddr); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for i, wantChanged := range []bool{false, false, true} {
		if i < len(h.events) && h.events[i].Changed != wantChanged {
			t.Errorf("event %d %+v: Changed %v, want %v (a new weight alone is no change of state)", i, h.events[i], h.events[i].Changed, wantChanged)
		}
	}
	if got, ok := h.m.DynamicWeight(svcA, rs1); !ok || got != 9 {
		t.Errorf("DynamicWeight = %d, %v; want 9, true", got, ok)
	}
}

func TestFlapDamping(t *testing.T) {
	c := tcpCheck(func(c *service.Check) { c.Retry = 0 })
	flapping := answers(pass, fail, pass, fail, pass, pass, pass)
	tests := []struct {
		name string
		opts Options
		set  *Options // given to SetDamping before the targets, as a reload does
		want []eventRec
	}{
		{
			name: "off by default",
			want: []eventRec{down(s(10)), up(s(20)), down(s(30)), up(s(40))},
		},
		{
			name: "more than 2 changes in 60s hold it down until 100s without a change",
			opts: Options{Damping: service.FlapDamping{Window: s(60), Changes: 2, HoldDown: s(100)}},
			want: []eventRec{down(s(10)), up(s(20)), down(s(30)), up(s(140))},
		},
		{
			name: "changes spread wider than the window are not flapping",
			opts: Options{Damping: service.FlapDamping{Window: s(15), Changes: 2, HoldDown: s(100)}},
			want: []eventRec{down(s(10)), up(s(20)), down(s(30)), up(s(40))},
		},
		{
			name: "a higher limit tolerates them",
			opts: Options{Damping: service.FlapDamping{Window: s(60), Changes: 4, HoldDown: s(100)}},
			want: []eventRec{down(s(10)), up(s(20)), down(s(30)), up(s(40))},
		},
		{
			name: "turned on by SetDamping",
			set:  &Options{Damping: service.FlapDamping{Window: s(60), Changes: 2, HoldDown: s(100)}},
			want: []eventRec{down(s(10)), up(s(20)), down(s(30)), up(s(140))},
		},
		{
			name: "turned off by SetDamping",
			opts: Options{Damping: service.FlapDamping{Window: s(60), Changes: 2, HoldDown: s(100)}},
			set:  &Options{},
			want: []eventRec{down(s(10)), up(s(20)), down(s(30)), up(s(40))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.opts, flapping)
			if o := tt.set; o != nil {
				h.m.SetDamping(o.Damping)
			}
			h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}})
			h.runUntil(s(150))
			if diff := cmp.Diff(tt.want, h.eventRecs(), cmpAddr); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlapHoldExtendsWhileFlapping(t *testing.T) {
	c := tcpCheck(func(c *service.Check) { c.Retry = 0 })
	// Flaps at 10, 20, 30 (held until 130), then again at 40 and 50:
	// each change while flapping restarts the hold.
	h := newHarness(t, Options{Damping: service.FlapDamping{Window: s(60), Changes: 2, HoldDown: s(100)}}, answers(pass, fail, pass, fail, pass, fail, pass))
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}})
	h.runUntil(s(200))
	if diff := cmp.Diff([]eventRec{down(s(10)), up(s(20)), down(s(30)), up(s(160))}, h.eventRecs(), cmpAddr); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestUpdate(t *testing.T) {
	c := tcpCheck(func(c *service.Check) { c.Retry = 0 })
	tgt := func(checks ...service.Check) Target { return Target{Service: svcA, Backend: rs1, Checks: checks} }
	failing := func(*call, int) outcome { return fail }

	t.Run("unchanged checks keep state and schedule", func(t *testing.T) {
		h := newHarness(t, Options{}, answers(pass, fail))
		h.update(tgt(c))
		h.runUntil(s(15)) // down at 10
		moved := c
		moved.Source = service.Pos{File: "/etc/xlb.yaml", Line: 42}
		h.update(tgt(moved))
		h.runUntil(s(25))
		if diff := cmp.Diff(ds(0, 10, 20), h.probeTimes()); diff != "" {
			t.Errorf("probe times (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]eventRec{down(s(10)), up(s(20))}, h.eventRecs(), cmpAddr); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
	t.Run("changed checks restart the schedule but keep a down backend down", func(t *testing.T) {
		h := newHarness(t, Options{}, failing)
		h.update(tgt(c))
		h.runUntil(s(5)) // down at 0 (startup)
		changed := c
		changed.DelayLoop = s(4)
		changed.Warmup = s(1)
		h.m.warmup = func(max time.Duration) time.Duration { return max }
		h.update(tgt(changed))
		if h.m.Up(svcA, rs1) {
			t.Fatal("a reload brought a down backend up")
		}
		h.respond = answers(pass)
		h.runUntil(s(7))
		if diff := cmp.Diff(ds(0, 6), h.probeTimes()); diff != "" {
			t.Errorf("probe times (-want +got): the new schedule starts after warmup\n%s", diff)
		}
		if diff := cmp.Diff([]eventRec{down(0), up(s(6))}, h.eventRecs(), cmpAddr); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
	t.Run("an added check of a down backend starts down", func(t *testing.T) {
		h := newHarness(t, Options{}, failing)
		h.update(tgt(c))
		h.runUntil(s(5))
		misc := service.Check{Kind: service.CheckMisc, MiscPath: "/bin/true", DelayLoop: s(10), MiscTimeout: s(4)}
		h.update(tgt(c, misc))
		if h.m.Up(svcA, rs1) {
			t.Fatal("adding a check brought a down backend up")
		}
		if len(h.events) != 1 {
			t.Errorf("events %v, want only the first down", h.eventRecs())
		}
	})
	t.Run("removing a passing check keeps the failing one's verdict", func(t *testing.T) {
		misc := service.Check{Kind: service.CheckMisc, MiscPath: "/bin/true", DelayLoop: s(10), MiscTimeout: s(4)}
		h := newHarness(t, Options{}, func(c *call, _ int) outcome {
			if c.check.Kind == service.CheckTCP {
				return fail
			}
			return pass
		})
		h.update(tgt(c, misc))
		h.runUntil(s(5)) // tcp down at 0
		h.update(tgt(c))
		if h.m.Up(svcA, rs1) {
			t.Fatal("dropping the passing check brought the backend up")
		}
		h.runUntil(s(25))
		if diff := cmp.Diff([]eventRec{down(0)}, h.eventRecs(), cmpAddr); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
	t.Run("removing every check brings a backend up", func(t *testing.T) {
		h := newHarness(t, Options{}, failing)
		h.update(tgt(c))
		h.runUntil(s(5))
		h.update(tgt())
		if !h.m.Up(svcA, rs1) {
			t.Error("backend without checks is down")
		}
		if diff := cmp.Diff([]eventRec{down(0), up(s(5))}, h.eventRecs(), cmpAddr); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if n := h.clk.Pending(); n != 0 {
			t.Errorf("%d timers pending, want 0", n)
		}
	})
	t.Run("removed targets stop probing, even mid-probe", func(t *testing.T) {
		h := newHarness(t, Options{}, answers(pass, hang))
		h.update(tgt(c), Target{Service: svcB, Backend: rs2, Checks: []service.Check{tcpCheck(nil)}})
		h.runUntil(s(10)) // both probes at 10 hang
		if len(h.waiting) != 2 {
			t.Fatalf("%d probes in flight, want 2", len(h.waiting))
		}
		inFlight := h.waiting[0].c
		if inFlight.be != rs1 {
			inFlight = h.waiting[1].c
		}
		h.update(Target{Service: svcB, Backend: rs2, Checks: []service.Check{tcpCheck(nil)}})
		if inFlight.ctx.Err() == nil {
			t.Error("the removed target's probe in flight was not cancelled")
		}
		h.runUntil(s(100))
		var rs1Probes, rs2Probes []time.Duration
		for _, p := range h.probes {
			if p.Be == rs1 {
				rs1Probes = append(rs1Probes, p.At)
			} else {
				rs2Probes = append(rs2Probes, p.At)
			}
		}
		if diff := cmp.Diff(ds(0, 10), rs1Probes); diff != "" {
			t.Errorf("probes of the removed target (-want +got):\n%s", diff)
		}
		// The kept target goes on: its hung probe times out at 13 and is
		// retried at 15.
		if diff := cmp.Diff(ds(0, 10, 15, 25, 35, 45, 55, 65, 75, 85, 95), rs2Probes); diff != "" {
			t.Errorf("probes of the kept target (-want +got):\n%s", diff)
		}
		if !h.m.Up(svcA, rs1) {
			t.Error("a removed target is reported down")
		}
		if len(h.events) != 0 {
			t.Errorf("events %v, want none", h.eventRecs())
		}
	})
	t.Run("an empty update stops everything", func(t *testing.T) {
		h := newHarness(t, Options{}, answers())
		h.update(tgt(c))
		h.runUntil(s(10))
		h.update()
		if n := h.clk.Pending(); n != 0 {
			t.Errorf("%d timers pending after removing every target, want 0", n)
		}
		h.runUntil(s(100))
		if diff := cmp.Diff(ds(0, 10), h.probeTimes()); diff != "" {
			t.Errorf("probe times (-want +got):\n%s", diff)
		}
	})
}

func TestUpWithoutChecks(t *testing.T) {
	h := newHarness(t, Options{}, answers())
	h.update(Target{Service: svcA, Backend: rs1})
	if !h.m.Up(svcA, rs1) || !h.m.Up(svcA, rs2) {
		t.Error("backends without checks, or unknown, are not up")
	}
	h.runUntil(s(100))
	if len(h.probes) != 0 || len(h.events) != 0 {
		t.Errorf("probes %v, events %v; want none", h.probes, h.events)
	}
}

func TestCloseStopsProbesAndClosesEvents(t *testing.T) {
	h := newHarness(t, Options{}, answers(hang))
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{tcpCheck(nil)}})
	h.runUntil(0)
	if len(h.waiting) != 1 {
		t.Fatalf("%d probes in flight, want 1", len(h.waiting))
	}
	h.m.Close()
	if err := h.waiting[0].c.ctx.Err(); err == nil {
		t.Error("Close did not cancel the probe in flight")
	}
	select {
	case _, ok := <-h.m.Events():
		if ok {
			t.Error("event after Close")
		}
	case <-time.After(guard):
		t.Fatal("Events not closed")
	}
	h.m.Update([]Target{{Service: svcA, Backend: rs1, Checks: []service.Check{tcpCheck(nil)}}})
	if n := h.clk.Pending(); n != 0 {
		t.Errorf("Update after Close started %d timers", n)
	}
}

func TestTargetsOf(t *testing.T) {
	c := tcpCheck(nil)
	svcs := []service.Service{{
		VIP: svcA.VIP, Port: 80, Proto: service.TCP,
		Backends: []service.Backend{{Addr: rs1.Addr(), Port: 80, Checks: []service.Check{c}}, {Addr: rs2.Addr(), Port: 80}},
	}}
	want := []Target{{Service: svcA, Backend: rs1, Checks: []service.Check{c}}, {Service: svcA, Backend: rs2}}
	if diff := cmp.Diff(want, TargetsOf(svcs), cmpAddr); diff != "" {
		t.Errorf("TargetsOf (-want +got):\n%s", diff)
	}
}

// TestAlpha: a backend whose check has alpha starts down, at once and
// reported (so a reload that adds it takes it out of the table), and comes
// up with its first passing probe; one that never passes never comes up.
func TestAlpha(t *testing.T) {
	h := newHarness(t, Options{}, func(c *call, n int) outcome {
		if c.be == rs2 {
			return fail
		}
		return pass
	})
	h.m.warmup = func(time.Duration) time.Duration { return s(1) }
	alpha := tcpCheck(nil)
	alpha.Alpha = true
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{alpha}},
		Target{Service: svcA, Backend: rs2, Checks: []service.Check{alpha}})
	if h.m.Up(svcA, rs1) || h.m.Up(svcA, rs2) {
		t.Fatalf("alpha backends up before any probe: rs1 %v, rs2 %v", h.m.Up(svcA, rs1), h.m.Up(svcA, rs2))
	}
	h.runUntil(s(30))
	want := []eventRec{{At: 0, Backend: rs1, Up: false}, {At: 0, Backend: rs2, Up: false}, {At: s(1), Backend: rs1, Up: true}}
	if diff := cmp.Diff(want, h.eventRecs(), cmpAddr); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for i, e := range h.events {
		if i < 2 && (!strings.HasPrefix(e.Reason, "alpha") || e.Changed) {
			t.Errorf("event %+v: want an alpha start, not a change (no notify_down)", e)
		}
		if i == 2 && !e.Changed {
			t.Errorf("event %+v: coming up is a change (notify_up)", e)
		}
	}
}

// TestPreview: before a reload commits to Update, Preview answers for a
// backend it adds with alpha as down and for the others as the manager
// does; the manager itself has not changed.
func TestPreview(t *testing.T) {
	h := newHarness(t, Options{}, func(*call, int) outcome { return fail })
	plain, alpha := tcpCheck(nil), tcpCheck(nil)
	alpha.Alpha = true
	h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{plain}})
	h.runUntil(s(30)) // rs1 fails: down
	targets := []Target{
		{Service: svcA, Backend: rs1, Checks: []service.Check{alpha}}, // known: as it is
		{Service: svcA, Backend: rs2, Checks: []service.Check{alpha}}, // new, alpha: down
		{Service: svcB, Backend: rs2, Checks: []service.Check{plain}}, // new: up
	}
	p := h.m.Preview(targets)
	for _, tc := range []struct {
		svc  service.ServiceKey
		be   netip.AddrPort
		want bool
	}{{svcA, rs1, false}, {svcA, rs2, false}, {svcB, rs2, true}} {
		if got := p.Up(tc.svc, tc.be); got != tc.want {
			t.Errorf("Preview: %s %s up %v, want %v", tc.svc, tc.be, got, tc.want)
		}
	}
	if !h.m.Up(svcA, rs2) {
		t.Error("Preview changed the manager: rs2 of svcA, unknown to it, is no longer up")
	}
}

// TestLogAllFailures: a failing check logs the failure that takes it down;
// with log_all_failures it logs every failed probe, retries and the probes
// of a check already down included.
func TestLogAllFailures(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprint(all), func(t *testing.T) {
			var logs testutil.Buffer
			h := newHarness(t, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))}, func(*call, int) outcome { return fail })
			c := tcpCheck(func(c *service.Check) { c.LogAllFailures = all })
			h.update(Target{Service: svcA, Backend: rs1, Checks: []service.Check{c}})
			// Probes at 0 (down: the first failure counts at startup), 10, 12, 22, 24.
			h.runUntil(s(25))
			if len(h.probes) < 3 {
				t.Fatalf("%d probes: the test needs retries and probes of a down check", len(h.probes))
			}
			fails := strings.Count(logs.String(), `msg="health check fails"`)
			each := strings.Count(logs.String(), `msg="health check probe failed"`)
			want := 0
			if all {
				want = len(h.probes) - 1
			}
			if fails != 1 || each != want {
				t.Errorf("%d probes: %d \"fails\" and %d \"probe failed\" lines, want 1 and %d:\n%s", len(h.probes), fails, each, want, logs.String())
			}
		})
	}
}
