package clocktest

import (
	"slices"
	"testing"
	"time"
)

// TestFake: timers fire in deadline order (the first set first among
// equals) with the clock at their deadline, timers set while firing fire
// in the same advance when due, and a stopped timer never fires.
func TestFake(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(t0)
	var fired []string
	at := func(name string) func() {
		return func() { fired = append(fired, name+"@"+c.Now().Sub(t0).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, func() {
		at("a")()
		c.AfterFunc(time.Second, at("a+1s"))
	})
	c.AfterFunc(3*time.Second, at("d"))
	stopped := c.AfterFunc(2*time.Second, at("never"))
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop: want true once, then false")
	}
	if next, ok := c.Next(); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Errorf("Next: %v %v, want t0+1s", next, ok)
	}
	c.Advance(3 * time.Second)
	want := []string{"a@1s", "a+1s@2s", "c@3s", "d@3s"}
	if !slices.Equal(fired, want) {
		t.Errorf("fired %v, want %v", fired, want)
	}
	if n := c.Pending(); n != 0 {
		t.Errorf("%d timers pending", n)
	}
	if got := c.Now(); !got.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("Now %v, want t0+3s", got)
	}
}
