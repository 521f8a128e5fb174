// Package clocktest is a clock.Clock for tests: time moves only when the
// test says, and timers fire synchronously, in deadline order, while it
// does, so a state machine's every timing rule can be checked without
// sleeping.
package clocktest

import (
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/clock"
)

// Fake is a clock that moves only when told to.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer // in the order they were set
}

type timer struct {
	c    *Fake
	when time.Time
	f    func()
	done bool
}

// New returns a Fake that reads start.
func New(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc registers f to run when the clock has been moved d on; a
// negative d counts as zero.
func (c *Fake) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, when: c.now.Add(max(d, 0)), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer if it has not fired.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.remove(t)
	return true
}

func (c *Fake) remove(t *timer) {
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return
		}
	}
}

// earliest returns the pending timer that fires first, the one set first
// among equals; c.mu must be held.
func (c *Fake) earliest() *timer {
	var first *timer
	for _, t := range c.timers {
		if first == nil || t.when.Before(first.when) {
			first = t
		}
	}
	return first
}

// Next returns when the first pending timer fires.
func (c *Fake) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.earliest()
	if t == nil {
		return time.Time{}, false
	}
	return t.when, true
}

// Pending returns the number of timers neither fired nor stopped.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// AdvanceTo moves the clock to at, firing every timer due by then, those
// the fired ones set included, each with the clock at its deadline.
func (c *Fake) AdvanceTo(at time.Time) {
	for {
		c.mu.Lock()
		t := c.earliest()
		if t == nil || t.when.After(at) {
			if at.After(c.now) {
				c.now = at
			}
			c.mu.Unlock()
			return
		}
		t.done = true
		c.remove(t)
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.mu.Unlock()
		t.f()
	}
}

// Advance moves the clock d on (see AdvanceTo).
func (c *Fake) Advance(d time.Duration) { c.AdvanceTo(c.Now().Add(d)) }
