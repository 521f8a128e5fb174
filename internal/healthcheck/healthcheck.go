// Package healthcheck decides which backends are up. It probes every
// backend with the checks of its configuration (TCP_CHECK, HTTP_GET,
// SSL_GET, MISC_CHECK) on keepalived's schedule and with keepalived's rules
// (delay_loop, retry, delay_before_retry, connect_timeout, warmup), and
// reports each change of a backend's state as an Event. What a down backend
// means for the data path (weight 0 or removal, sorry server) is for the
// consumer of the events to decide.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/clock"
	"github.com/xlb-project/xlb/internal/service"
)

// Target is one backend of one service and the checks that decide whether
// it is up. A backend that serves several services is several targets, each
// probed on its own, as keepalived does.
type Target struct {
	Service service.ServiceKey
	Backend netip.AddrPort
	// Checks must all pass for the backend to be up; with none it is
	// always up. Their intervals must be resolved (see service.Check).
	Checks []service.Check
}

// TargetsOf returns the targets of services: one per backend.
func TargetsOf(services []service.Service) []Target {
	var out []Target
	for i := range services {
		s := &services[i]
		for j := range s.Backends {
			b := &s.Backends[j]
			out = append(out, Target{Service: s.Key(), Backend: b.AddrPort(), Checks: b.Checks})
		}
	}
	return out
}

// Event is a change of a backend's state.
type Event struct {
	Service service.ServiceKey
	Backend netip.AddrPort
	Up      bool
	// Changed reports that Up changed: a backend went up or down, and its
	// notify_up or notify_down script is due. It is false for an event
	// that only carries a new weight, and for an alpha backend's initial
	// down, which is where it starts rather than a change.
	Changed bool
	// Weight is the weight a misc_dynamic check last asked for (its exit
	// status minus 2); nil means the configured weight. An event is also
	// sent when only the weight changes.
	Weight *int
	// Reason says why, in a form fit for a log line.
	Reason string
	At     time.Time
}

// Options configure a Manager. The zero value is usable: no logging and
// no flap damping.
type Options struct {
	Log *slog.Logger
	// Damping holds a flapping backend down; off unless all three of its
	// values are positive.
	Damping service.FlapDamping
	// OnProbe, if set, is told the outcome of every probe (for metrics);
	// it is called with the manager's lock held and must not block.
	OnProbe func(ProbeResult)
}

// ProbeResult is the outcome of one probe of one check.
type ProbeResult struct {
	Service service.ServiceKey
	Backend netip.AddrPort
	Kind    service.CheckKind
	OK      bool
	// Duration is how long the probe took, on the manager's clock.
	Duration time.Duration
}

func dampingOn(f service.FlapDamping) bool {
	return f.Window > 0 && f.Changes > 0 && f.HoldDown > 0
}

// Manager runs the checks of a set of targets and reports their state.
// Its methods are safe for concurrent use.
type Manager struct {
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	prober Prober
	// warmup picks the delay before a check's first probe, at most max.
	warmup func(max time.Duration) time.Duration

	out  chan Event
	wake chan struct{}
	quit chan struct{}
	fwd  sync.WaitGroup
	wg   sync.WaitGroup // probes in flight

	mu      sync.Mutex
	targets map[targetKey]*target
	started bool
	closed  bool
	queue   []Event
	emitted int
	probes  int
	// afterProbe, if set, is called when the outcome of a probe has been
	// handled; tests use it to wait for the manager to settle.
	afterProbe func()
}

type targetKey struct {
	svc service.ServiceKey
	be  netip.AddrPort
}

// target is the state of one backend of one service.
type target struct {
	key    targetKey
	checks []*runner
	// raw is whether every check is up; up is what was last reported,
	// which is raw unless the backend is held down for flapping.
	raw       bool
	up        bool
	weight    *int
	flips     []time.Time
	holdUntil time.Time
	hold      clock.Timer
	gone      bool
}

// runner schedules the probes of one check.
type runner struct {
	t     *target
	check service.Check
	m     machine
	timer clock.Timer
	// seq invalidates the timers and probe results of a schedule that
	// was stopped or replaced.
	seq     uint64
	cancel  context.CancelCauseFunc
	stopped bool
	lastErr error
}

// NewManager returns a Manager with no targets: it probes with real
// connections and processes on the wall clock, and spreads the first
// probes of checks at random, as keepalived does. Call Close to stop it.
func NewManager(opts Options) *Manager {
	return newManager(opts, clock.Real{}, &DefaultProber{}, randomWarmup)
}

// newManager is NewManager with its clock, prober and warmup draw given,
// so that tests can run checks on a fake clock against canned answers.
func newManager(opts Options, clk clock.Clock, p Prober, warmup func(max time.Duration) time.Duration) *Manager {
	m := &Manager{
		opts:    opts,
		clock:   clk,
		log:     opts.Log,
		prober:  p,
		warmup:  warmup,
		out:     make(chan Event),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		targets: map[targetKey]*target{},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.fwd.Add(1)
	go m.forward()
	return m
}

func randomWarmup(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max + 1)
}

// Events returns the channel on which every change of a backend's state is
// sent, in the order the changes happened. The channel is closed by Close;
// events not yet received then are dropped.
func (m *Manager) Events() <-chan Event { return m.out }

// Up reports whether a backend is up. Backends without checks, and
// backends the manager does not know, are up.
func (m *Manager) Up(svc service.ServiceKey, be netip.AddrPort) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.targets[targetKey{svc, be}]
	return !ok || t.up
}

// DynamicWeight returns the weight a misc_dynamic check of the backend last
// asked for, if any.
func (m *Manager) DynamicWeight(svc service.ServiceKey, be netip.AddrPort) (int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.targets[targetKey{svc, be}]
	if !ok || t.weight == nil {
		return 0, false
	}
	return *t.weight, true
}

// Preview answers Up and DynamicWeight as the manager will once Update has
// made targets its targets: a backend it probes already as it is now, a
// new one in the state it starts in (down with an alpha check). A reload
// computes its tables with it before it commits to Update, so that a
// backend it adds with alpha takes no traffic before its first check
// passes, and a reload that is rejected changes nothing here.
func (m *Manager) Preview(targets []Target) Preview {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := Preview{m: m, startDown: map[targetKey]bool{}}
	for _, tg := range targets {
		k := targetKey{tg.Service, tg.Backend}
		if _, known := m.targets[k]; !known && slices.ContainsFunc(tg.Checks, func(c service.Check) bool { return !newMachine(c, false).up }) {
			p.startDown[k] = true
		}
	}
	return p
}

// Preview is a Manager's health as it will be after an Update (see
// Manager.Preview).
type Preview struct {
	m         *Manager
	startDown map[targetKey]bool
}

// Up reports whether the backend is up, or will start up.
func (p Preview) Up(svc service.ServiceKey, be netip.AddrPort) bool {
	return !p.startDown[targetKey{svc, be}] && p.m.Up(svc, be)
}

// DynamicWeight is the manager's.
func (p Preview) DynamicWeight(svc service.ServiceKey, be netip.AddrPort) (int, bool) {
	return p.m.DynamicWeight(svc, be)
}

// SetVIPs names the addresses probes must never leave from: the VIPs of
// the configuration (see vips).
func (m *Manager) SetVIPs(addrs []netip.Addr) {
	if p, ok := m.prober.(*DefaultProber); ok {
		p.vips.SetVIPs(addrs)
	}
}

// SetDamping changes flap damping (see Options), for a configuration
// reload. A backend held down stays held until its hold-down has passed.
func (m *Manager) SetDamping(f service.FlapDamping) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opts.Damping = f
}

// Update makes targets the set of probed backends. New targets start up
// (keepalived's default), or down when a check has Alpha, which is then
// reported as an event; their first probe comes after a random warmup.
// Targets that are gone stop being probed. A target whose checks are
// unchanged keeps running untouched; one whose checks changed starts a new
// schedule but keeps its state, so a reload never turns a down backend up.
// Changes of position alone (the Source of a check) are not changes.
func (m *Manager) Update(targets []Target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	startup := !m.started
	m.started = true
	seen := make(map[targetKey]bool, len(targets))
	for _, tg := range targets {
		k := targetKey{tg.Service, tg.Backend}
		if seen[k] {
			m.log.Warn("health check target listed twice; using the first", "service", k.svc.String(), "backend", k.be.String())
			continue
		}
		seen[k] = true
		t := m.targets[k]
		switch {
		case t == nil:
			t = &target{key: k, raw: true, up: true}
			m.targets[k] = t
			for _, c := range tg.Checks {
				m.startRunner(t, c, newMachine(c, startup))
			}
			// An alpha check starts its backend down; the event lets a
			// reload that adds the backend take it out of the table at
			// once. It is no flip for flap damping.
			if slices.ContainsFunc(t.checks, func(r *runner) bool { return !r.m.up }) {
				t.raw, t.up = false, false
				m.report(t, m.clock.Now(), "alpha: down until its health checks pass", false)
			}
		case !sameChecks(t.checkList(), tg.Checks):
			m.restart(t, tg.Checks)
		default:
			// Same checks, perhaps written elsewhere: keep the schedule,
			// take the new positions (MISC_CHECK's script security looks
			// at the configuration file they name).
			for i, r := range t.checks {
				r.check = tg.Checks[i]
			}
		}
	}
	for k, t := range m.targets {
		if !seen[k] {
			m.stopTarget(t)
			delete(m.targets, k)
		}
	}
}

// restart replaces the checks of t. A new check that equals an old one
// takes over its verdict; any other inherits the backend's state.
func (m *Manager) restart(t *target, checks []service.Check) {
	old := t.checks
	for _, r := range old {
		m.stopRunner(r)
	}
	t.checks = nil
	for _, c := range checks {
		up := t.raw
		for _, r := range old {
			if sameCheck(r.check, c) {
				up = r.m.up
				break
			}
		}
		m.startRunner(t, c, resumed(c, up))
	}
	m.settle(t, m.clock.Now(), "")
}

func (m *Manager) startRunner(t *target, c service.Check, mc machine) {
	r := &runner{t: t, check: c, m: mc}
	t.checks = append(t.checks, r)
	m.schedule(r, m.warmup(c.Warmup))
}

func (m *Manager) stopRunner(r *runner) {
	r.stopped = true
	r.seq++
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.cancel != nil {
		r.cancel(errStopped)
	}
}

func (m *Manager) stopTarget(t *target) {
	t.gone = true
	for _, r := range t.checks {
		m.stopRunner(r)
	}
	if t.hold != nil {
		t.hold.Stop()
	}
}

func (t *target) checkList() []service.Check {
	out := make([]service.Check, len(t.checks))
	for i, r := range t.checks {
		out[i] = r.check
	}
	return out
}

// Close stops every probe, waits for those in flight to return and closes
// the Events channel.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	for _, t := range m.targets {
		m.stopTarget(t)
	}
	m.mu.Unlock()
	m.wg.Wait()
	close(m.quit)
	m.fwd.Wait()
}

var errStopped = errors.New("check stopped")

// timeoutError is the cause of a probe cancelled for taking too long.
type timeoutError struct {
	what string
	d    time.Duration
}

func (e *timeoutError) Error() string { return fmt.Sprintf("no answer within %s %s", e.what, e.d) }

// probeTimeout returns the bound of one probe: connect_timeout, or for
// MISC_CHECK misc_timeout, which defaults to delay_loop as in keepalived.
func probeTimeout(c service.Check) (string, time.Duration) {
	if c.Kind == service.CheckMisc {
		if c.MiscTimeout > 0 {
			return "misc_timeout", c.MiscTimeout
		}
		return "misc_timeout (delay_loop)", c.DelayLoop
	}
	if c.ConnectTimeout > 0 {
		return "connect_timeout", c.ConnectTimeout
	}
	return "connect_timeout", service.DefaultConnectTimeout
}

func (m *Manager) schedule(r *runner, d time.Duration) {
	r.seq++
	seq := r.seq
	r.timer = m.clock.AfterFunc(d, func() { m.fire(r, seq) })
}

// fire starts a probe. The probe's deadline is a timer on the manager's
// clock cancelling its context, rather than a context deadline, so that
// connect_timeout follows the same clock as every other delay.
func (m *Manager) fire(r *runner, seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || r.stopped || seq != r.seq {
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	what, d := probeTimeout(r.check)
	deadline := m.clock.AfterFunc(d, func() { cancel(&timeoutError{what, d}) })
	r.cancel = cancel
	c := r.m.probeCheck(r.check)
	be := r.t.key.be
	start := m.clock.Now()
	m.probes++
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		res, err := m.prober.Probe(ctx, c, be)
		deadline.Stop()
		var te *timeoutError
		if errors.As(context.Cause(ctx), &te) {
			// A probe that outlived its bound failed, whatever it
			// returned afterwards.
			err = te
		}
		cancel(nil)
		m.done(r, seq, c, start, res, err)
	}()
}

// done handles the outcome of one probe.
func (m *Manager) done(r *runner, seq uint64, c service.Check, start time.Time, res Result, err error) {
	m.mu.Lock()
	if !m.closed && !r.stopped && seq == r.seq {
		m.handle(r, c, start, res, err)
	}
	hook := m.afterProbe
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (m *Manager) handle(r *runner, c service.Check, start time.Time, res Result, err error) {
	t := r.t
	r.cancel = nil
	now := m.clock.Now()
	s := r.m.observe(err == nil)
	if m.opts.OnProbe != nil {
		m.opts.OnProbe(ProbeResult{Service: t.key.svc, Backend: t.key.be, Kind: c.Kind, OK: err == nil, Duration: now.Sub(start)})
	}
	d := s.delay
	if s.fromStart {
		d = max(start.Add(d).Sub(now), 0)
	}
	m.schedule(r, d)
	if err != nil {
		r.lastErr = err
	}
	switch {
	case s.changed && r.m.up:
		m.log.Info("health check passes", "service", t.key.svc.String(), "backend", t.key.be.String(), "check", describe(c, t.key.be))
	case s.changed:
		m.log.Warn("health check fails", "service", t.key.svc.String(), "backend", t.key.be.String(), "check", describe(c, t.key.be), "err", err)
	case err != nil && c.LogAllFailures:
		m.log.Info("health check probe failed", "service", t.key.svc.String(), "backend", t.key.be.String(), "check", describe(c, t.key.be), "err", err)
	}
	reason := ""
	if err == nil && res.Weight != nil && (t.weight == nil || *t.weight != *res.Weight) {
		w := *res.Weight
		t.weight = &w
		reason = fmt.Sprintf("%s asks for weight %d", describe(c, t.key.be), w)
	}
	m.settle(t, now, reason)
}

// settle recomputes the state of t from its checks and the damping rule,
// and reports a change. A non-empty weightNote forces an event, because the
// dynamic weight changed.
func (m *Manager) settle(t *target, now time.Time, weightNote string) {
	raw := true
	for _, r := range t.checks {
		raw = raw && r.m.up
	}
	if raw != t.raw {
		t.raw = raw
		m.noteFlip(t, now)
	}
	up := t.raw && !now.Before(t.holdUntil)
	if up == t.up && weightNote == "" {
		return
	}
	changed := up != t.up
	t.up = up
	reason := weightNote
	if reason == "" {
		reason = m.reason(t, now)
	}
	m.report(t, now, reason, changed)
}

// report logs t's state and queues it as an event; changed says that its
// up state changed.
func (m *Manager) report(t *target, now time.Time, reason string, changed bool) {
	up := t.up
	if up {
		m.log.Info("backend up", "service", t.key.svc.String(), "backend", t.key.be.String(), "reason", reason)
	} else {
		m.log.Warn("backend down", "service", t.key.svc.String(), "backend", t.key.be.String(), "reason", reason)
	}
	var w *int
	if t.weight != nil {
		v := *t.weight
		w = &v
	}
	m.queue = append(m.queue, Event{Service: t.key.svc, Backend: t.key.be, Up: up, Changed: changed, Weight: w, Reason: reason, At: now})
	m.emitted++
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) reason(t *target, now time.Time) string {
	if t.raw && !t.up {
		return fmt.Sprintf("flapping: held down until %s", t.holdUntil.Format(time.RFC3339))
	}
	if t.raw {
		if len(t.checks) == 0 {
			return "no health checks"
		}
		return "all health checks pass"
	}
	for _, r := range t.checks {
		if !r.m.up {
			if r.lastErr == nil {
				return describe(r.check, t.key.be) + " failed"
			}
			return fmt.Sprintf("%s: %v", describe(r.check, t.key.be), r.lastErr)
		}
	}
	return "down"
}

// noteFlip applies flap damping to a change of raw state at now.
func (m *Manager) noteFlip(t *target, now time.Time) {
	f := m.opts.Damping
	if !dampingOn(f) {
		return
	}
	from := now.Add(-f.Window)
	kept := t.flips[:0]
	for _, at := range t.flips {
		if at.After(from) {
			kept = append(kept, at)
		}
	}
	t.flips = append(kept, now)
	if len(t.flips) <= f.Changes {
		return
	}
	t.holdUntil = now.Add(f.HoldDown)
	if t.hold != nil {
		t.hold.Stop()
	}
	m.log.Warn("backend flapping; holding it down", "service", t.key.svc.String(), "backend", t.key.be.String(),
		"changes", len(t.flips), "window", f.Window, "until", t.holdUntil)
	until := t.holdUntil
	t.hold = m.clock.AfterFunc(f.HoldDown, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed || t.gone || !t.holdUntil.Equal(until) {
			return
		}
		m.settle(t, m.clock.Now(), "")
	})
}

// forward delivers queued events, so that a slow reader never blocks the
// probes.
func (m *Manager) forward() {
	defer m.fwd.Done()
	defer close(m.out)
	for {
		m.mu.Lock()
		if len(m.queue) == 0 {
			m.mu.Unlock()
			select {
			case <-m.wake:
				continue
			case <-m.quit:
				return
			}
		}
		ev := m.queue[0]
		m.queue = m.queue[1:]
		m.mu.Unlock()
		select {
		case m.out <- ev:
		case <-m.quit:
			return
		}
	}
}

// describe names a check in logs and reasons, e.g. "http check GET
// http://198.51.100.7:80/health".
func describe(c service.Check, be netip.AddrPort) string {
	dst := dest(c, be)
	switch c.Kind {
	case service.CheckHTTP, service.CheckSSL:
		scheme := urlScheme(c.Kind)
		if len(c.URLs) == 1 {
			return fmt.Sprintf("%s check GET %s://%s%s", c.Kind, scheme, dst, c.URLs[0].Path)
		}
		return fmt.Sprintf("%s check of %s://%s", c.Kind, scheme, dst)
	case service.CheckMisc:
		return fmt.Sprintf("misc check %q", c.MiscPath)
	}
	return fmt.Sprintf("%s check of %s", c.Kind, dst)
}

// sameChecks compares two check lists, ignoring where they were written.
func sameChecks(a, b []service.Check) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameCheck(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameCheck reports whether two checks probe alike: a reload that only
// moved a check, within its file or to another, keeps its runner and its
// state.
func sameCheck(a, b service.Check) bool {
	return reflect.DeepEqual(service.WithoutPositions(a), service.WithoutPositions(b))
}
