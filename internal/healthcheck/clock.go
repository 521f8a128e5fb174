package healthcheck

import "time"

// Clock is the time source of a Manager. Every delay the state machines
// ask for (delay_loop, delay_before_retry, warmup, connect_timeout, flap
// hold-down) goes through it, so tests can drive a Manager with a fake
// clock instead of sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started yet and reports
	// whether it did. A false return means f runs or has run.
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
