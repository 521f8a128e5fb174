package healthcheck

import (
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/clock"
)

// fakeClock is a Clock that moves only when told to. Timers fire
// synchronously, in deadline order, inside advanceTo.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	when time.Time
	seq  int
	f    func()
	done bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.remove(t)
	return true
}

func (c *fakeClock) remove(t *fakeTimer) {
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return
		}
	}
}

// earliest returns the pending timer that fires first; c.mu must be held.
func (c *fakeClock) earliest() *fakeTimer {
	var first *fakeTimer
	for _, t := range c.timers {
		if first == nil || t.when.Before(first.when) || t.when.Equal(first.when) && t.seq < first.seq {
			first = t
		}
	}
	return first
}

// next returns when the first pending timer fires.
func (c *fakeClock) next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.earliest()
	if t == nil {
		return time.Time{}, false
	}
	return t.when, true
}

// pending returns the number of timers not yet fired or stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// advanceTo moves the clock to at, firing every timer due by then,
// including those the fired ones set.
func (c *fakeClock) advanceTo(at time.Time) {
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

func (c *fakeClock) advance(d time.Duration) { c.advanceTo(c.Now().Add(d)) }
