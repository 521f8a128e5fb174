// Package slowstart ramps a real server that comes back up to its full
// weight over its service's slow_start window, so that new flows reach it
// gradually rather than as a thundering herd.
//
// Weighted Maglev gives each backend a share of the table in proportion
// to its weight, and weights are integers: a backend of weight 1 cannot be
// given a tenth of itself. So while a ramp runs in a service, every
// backend of that service is served at Steps times its weight and the
// ramping one at step times its weight, step going 1, 2, ..., Steps over
// the window. Scaling every weight by the same factor leaves the Maglev
// table as it was (the quotas are proportional), so a ramp costs Steps
// table rebuilds of that one service, one transaction each, and none of
// any other service; established flows keep their backend throughout (the
// flow table holds them), only new flows follow the table.
package slowstart

import (
	"net/netip"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/service"
)

// Steps is how many weight steps a ramp takes, and so how many Maglev
// rebuilds of its service.
const Steps = 10

// Overrides are the weights underneath the ramp (*override.Store).
type Overrides interface {
	Weight(svc service.ServiceKey, be netip.AddrPort, w int) int
}

// Locked runs fn with the daemon's applies held off, giving it the served
// configuration and a function that serves it anew.
type Locked func(fn func(cfg *service.Config, apply func() error) error) error

type key struct {
	svc service.ServiceKey
	be  netip.AddrPort
}

type ramp struct {
	start  time.Time
	window time.Duration
}

// Ramps keeps the ramps in progress. It is safe for concurrent use.
type Ramps struct {
	next   Overrides
	locked Locked
	now    func() time.Time

	mu      sync.Mutex
	ramps   map[key]ramp
	running bool
}

// New returns Ramps over next (nil: the weights as given) that re-serves
// the configuration through locked at each step.
func New(next Overrides, locked Locked) *Ramps {
	return &Ramps{next: next, locked: locked, now: time.Now, ramps: map[key]ramp{}}
}

// HealthChanged starts a ramp for a backend its checks took back up in a
// service with a slow_start window, and ends one for a backend that went
// down. It is called before the apply that serves the event, so the
// first step is what that apply serves.
func (r *Ramps) HealthChanged(ev healthcheck.Event, window time.Duration) {
	if !ev.Changed {
		return
	}
	k := key{ev.Service, ev.Backend}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ev.Up || window <= 0 {
		delete(r.ramps, k)
		return
	}
	r.ramps[k] = ramp{start: r.now(), window: window}
	if !r.running && r.locked != nil {
		r.running = true
		go r.run(window / Steps)
	}
}

// run re-serves the configuration at each step while a ramp runs, and
// once more after the last one ends, which serves the full weights.
func (r *Ramps) run(tick time.Duration) {
	for {
		time.Sleep(tick)
		r.mu.Lock()
		r.expire()
		active := len(r.ramps) > 0
		if !active {
			r.running = false
		}
		r.mu.Unlock()
		_ = r.locked(func(_ *service.Config, apply func() error) error { return apply() })
		if !active {
			return
		}
	}
}

// expire drops the ramps whose window has passed.
func (r *Ramps) expire() {
	now := r.now()
	for k, rp := range r.ramps {
		if now.Sub(rp.start) >= rp.window {
			delete(r.ramps, k)
		}
	}
}

// Weight is the weight be serves svc with: the overrides' weight, scaled
// as described in the package comment while a ramp runs in svc.
func (r *Ramps) Weight(svc service.ServiceKey, be netip.AddrPort, w int) int {
	if r.next != nil {
		w = r.next.Weight(svc, be, w)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire()
	inService := false
	for k := range r.ramps {
		inService = inService || k.svc == svc
	}
	if !inService {
		return w
	}
	rp, ramping := r.ramps[key{svc, be}]
	if !ramping {
		return w * Steps
	}
	step := 1 + int(Steps*r.now().Sub(rp.start)/rp.window)
	return w * min(step, Steps)
}
