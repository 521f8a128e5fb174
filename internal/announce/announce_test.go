package announce

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/clock/clocktest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fakeClock = clocktest.Fake

func newFakeClock() *fakeClock { return clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// log records address changes and announcements as strings.
type log struct {
	mu      sync.Mutex
	lines   []string
	failAdd string
}

func (l *log) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *log) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.lines
	l.lines = nil
	return s
}

func (l *log) Add(dev string, v VIP) error {
	if v.Prefix.String() == l.failAdd {
		return errors.New("boom")
	}
	l.add(fmt.Sprintf("add %s dev %s label %q", v.Prefix, dev, v.Label))
	return nil
}

func (l *log) Del(dev string, p netip.Prefix) error {
	l.add(fmt.Sprintf("del %s dev %s", p, dev))
	return nil
}

func (l *log) Announce(dev string, a netip.Addr) error {
	l.add(fmt.Sprintf("announce %s dev %s", a, dev))
	return nil
}

func testConfig() Config {
	return Config{
		Name: "vrrp_instance VI_1", Interface: "eth0",
		VIPs: []VIP{
			{Prefix: netip.MustParsePrefix("192.0.2.10/32")},
			{Prefix: netip.MustParsePrefix("2001:db8::10/64"), Dev: "eth1", Label: "eth1:vip"},
		},
		Repeat: 2, Delay: 5 * time.Second, Refresh: 0,
	}
}

func newTest(cfg Config) (*Announcer, *log, *fakeClock) {
	l := &log{}
	c := newFakeClock()
	return New(cfg, Options{Addresses: l, Sender: l, Clock: c, Logger: quiet}), l, c
}

var burst2 = []string{
	"announce 192.0.2.10 dev eth0", "announce 2001:db8::10 dev eth1",
	"announce 192.0.2.10 dev eth0", "announce 2001:db8::10 dev eth1",
}

func TestAcquireRelease(t *testing.T) {
	a, l, clock := newTest(testConfig())
	if err := a.Acquire(); err != nil {
		t.Fatal(err)
	}
	want := append([]string{
		`add 192.0.2.10/32 dev eth0 label ""`,
		`add 2001:db8::10/64 dev eth1 label "eth1:vip"`,
	}, burst2...)
	if diff := cmp.Diff(want, l.take()); diff != "" {
		t.Errorf("acquire (-want +got):\n%s", diff)
	}
	if !a.Held() {
		t.Error("not held after Acquire")
	}
	clock.Advance(5*time.Second - 1)
	if got := l.take(); len(got) != 0 {
		t.Errorf("before garp_master_delay: %v", got)
	}
	clock.Advance(1)
	if diff := cmp.Diff(burst2, l.take()); diff != "" {
		t.Errorf("second burst (-want +got):\n%s", diff)
	}
	clock.Advance(time.Hour)
	if got := l.take(); len(got) != 0 {
		t.Errorf("with garp_master_refresh 0: %v", got)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"del 192.0.2.10/32 dev eth0", "del 2001:db8::10/64 dev eth1"}, l.take()); diff != "" {
		t.Errorf("release (-want +got):\n%s", diff)
	}
	if a.Held() {
		t.Error("held after Release")
	}
}

// TestRefresh: every garp_master_refresh, garp_master_refresh_repeat
// announcements per address (one when unset), until Release.
func TestRefresh(t *testing.T) {
	for _, repeat := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("repeat %d", repeat), func(t *testing.T) {
			cfg := testConfig()
			cfg.Delay, cfg.Refresh, cfg.Repeat, cfg.RefreshRepeat = 0, 10*time.Second, 1, repeat
			a, l, clock := newTest(cfg)
			if err := a.Acquire(); err != nil {
				t.Fatal(err)
			}
			l.take()
			clock.Advance(35 * time.Second)
			if got, want := len(l.take()), 3*max(repeat, 1)*len(cfg.VIPs); got != want {
				t.Errorf("%d announcements in 35 s with refresh 10 s, want %d", got, want)
			}
			if err := a.Release(); err != nil {
				t.Fatal(err)
			}
			l.take()
			clock.Advance(time.Minute)
			if got := l.take(); len(got) != 0 {
				t.Errorf("announced after Release: %v", got)
			}
		})
	}
}

// TestReacquireCancelsOldSchedule: losing and regaining the addresses
// within garp_master_delay must not leave the first takeover's second
// burst behind.
func TestReacquireCancelsOldSchedule(t *testing.T) {
	a, l, clock := newTest(testConfig())
	if err := a.Acquire(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Second)
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if err := a.Acquire(); err != nil {
		t.Fatal(err)
	}
	l.take()
	clock.Advance(2 * time.Second) // the first schedule's second burst was due now
	if got := l.take(); len(got) != 0 {
		t.Errorf("stale second burst: %v", got)
	}
	clock.Advance(3 * time.Second)
	if diff := cmp.Diff(burst2, l.take()); diff != "" {
		t.Errorf("second burst of the new takeover (-want +got):\n%s", diff)
	}
}

func TestAcquireReportsFailures(t *testing.T) {
	a, l, _ := newTest(testConfig())
	l.failAdd = "192.0.2.10/32"
	err := a.Acquire()
	if err == nil || !strings.Contains(err.Error(), "vrrp_instance VI_1: add 192.0.2.10/32 dev eth0: boom") {
		t.Errorf("Acquire: %v, want the failed address named", err)
	}
	// The other address is still added and everything announced.
	if got := l.take(); len(got) != 1+len(burst2) {
		t.Errorf("after a failure: %v", got)
	}
}

// TestHandOver: after a reload the successor's addresses never leave the
// interface, the predecessor's others do, and only the successor
// announces; a successor that holds nothing leaves nothing behind.
func TestHandOver(t *testing.T) {
	tests := []struct {
		name     string
		acquired bool // the successor holds its addresses
		want     []string
	}{
		{"successor holds", true, []string{"del 2001:db8::10/64 dev eth1"}},
		{"successor does not hold", false, []string{"del 192.0.2.10/32 dev eth0", "del 2001:db8::10/64 dev eth1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, l, clock := newTest(testConfig())
			if err := old.Acquire(); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig()
			cfg.VIPs = []VIP{
				{Prefix: netip.MustParsePrefix("192.0.2.10/32")},
				{Prefix: netip.MustParsePrefix("192.0.2.11/32")},
			}
			next := New(cfg, Options{Addresses: l, Sender: l, Clock: clock, Logger: quiet})
			if tt.acquired {
				if err := next.Acquire(); err != nil {
					t.Fatal(err)
				}
			}
			l.take()
			if err := old.HandOver(next); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, l.take()); diff != "" {
				t.Errorf("hand over (-want +got):\n%s", diff)
			}
			if old.Held() {
				t.Error("the predecessor still holds after HandOver")
			}
			clock.Advance(time.Hour)
			for _, e := range l.take() {
				if !tt.acquired || strings.Contains(e, "2001:db8::10") {
					t.Errorf("after HandOver: %s", e)
				}
			}
			if err := old.HandOver(next); err != nil || len(l.take()) != 0 {
				t.Errorf("a second HandOver: %v, or it changed addresses", err)
			}
		})
	}
}

// TestReannounce: a held address is announced n times at once and n more
// after the delay, however often the master hears a lower priority in
// between; nothing once released.
func TestReannounce(t *testing.T) {
	cfg := testConfig()
	cfg.Delay = 0
	a, l, clock := newTest(cfg)
	a.Reannounce(2, time.Second)
	if got := l.take(); len(got) != 0 {
		t.Errorf("announced addresses it does not hold: %v", got)
	}
	if err := a.Acquire(); err != nil {
		t.Fatal(err)
	}
	l.take()
	a.Reannounce(2, time.Second)
	clock.Advance(500 * time.Millisecond)
	a.Reannounce(2, time.Second)
	if diff := cmp.Diff(append(slices.Clone(burst2), burst2...), l.take()); diff != "" {
		t.Errorf("two reannouncements (-want +got):\n%s", diff)
	}
	clock.Advance(time.Second)
	if diff := cmp.Diff(burst2, l.take()); diff != "" {
		t.Errorf("one second burst for both (-want +got):\n%s", diff)
	}
	a.Reannounce(2, time.Second)
	l.take()
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	l.take()
	clock.Advance(time.Hour)
	if got := l.take(); len(got) != 0 {
		t.Errorf("announced after Release: %v", got)
	}
}
