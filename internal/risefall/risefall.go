// Package risefall turns a run of pass/fail results into a verdict the way
// keepalived counts them: a failed subject is good again after rise
// successes in a row, a good one fails after fall failures in a row, and
// a result of the other kind starts the count again. A vrrp_script's
// verdict counts both; a health check counts rise only (fall 1), since its
// checker's retries already decide when it goes down.
package risefall

// Counter is a verdict that changes only after enough results in a row
// against it. Make one with New or Undecided.
type Counter struct {
	rise, fall int
	// n runs from 0 (failed, no success since) to rise+fall-1 (good, no
	// failure since); the verdict is good from rise on. This is
	// keepalived's vrrp_script "result".
	n int
	// undecided is set until the first result, which decides either way.
	undecided bool
}

// New returns a counter whose verdict is good (or failed) until rise
// failures (or successes) in a row change it: a verdict carried over a
// reload, or keepalived's init_fail. rise and fall below 1 count as 1.
func New(rise, fall int, good bool) Counter {
	c := Counter{rise: max(rise, 1), fall: max(fall, 1)}
	if good {
		c.n = c.top()
	}
	return c
}

// Undecided returns a counter without a verdict yet: its first result
// decides it either way, as a vrrp_script without init_fail starts.
func Undecided(rise, fall int) Counter {
	c := Counter{rise: max(rise, 1), fall: max(fall, 1), undecided: true}
	c.n = c.rise - 1
	return c
}

func (c *Counter) top() int { return c.rise + c.fall - 1 }

// Add records one result and returns the verdict and whether this result
// changed it (always true for an undecided counter's first result).
func (c *Counter) Add(ok bool) (good, changed bool) {
	switch {
	case ok && c.n < c.rise-1:
		c.n++
	case ok:
		changed = c.n < c.rise || c.undecided
		c.n = c.top()
	case c.n > c.rise:
		c.n--
	default:
		changed = c.n >= c.rise || c.undecided
		c.n = 0
	}
	c.undecided = false
	return c.n >= c.rise, changed
}
