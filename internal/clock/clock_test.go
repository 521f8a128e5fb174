package clock

import (
	"testing"
	"time"
)

// TestReal: the wall clock's timers fire, and a stopped one does not.
func TestReal(t *testing.T) {
	var c Clock = Real{}
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Errorf("Now is %v away from time.Now", d)
	}
	fired := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("AfterFunc did not fire within 10 s")
	}
	stopped := c.AfterFunc(time.Hour, func() { t.Error("a stopped timer fired") })
	if !stopped.Stop() {
		t.Error("Stop of a pending timer reported that it had already fired")
	}
}
