// Package announce makes a host the owner of virtual addresses: it adds
// them with netlink and tells the link with gratuitous ARP (IPv4) and
// unsolicited Neighbor Advertisements (IPv6), and removes them again. It
// knows nothing of VRRP; the caller says when.
package announce

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/clock"
)

// Config says which addresses to hold and how to announce them.
type Config struct {
	// Name names the owner in errors, e.g. "vrrp_instance VI_1"; the
	// logger (Options.Logger) names it in log lines.
	Name string
	// Interface is the device of addresses without their own Dev.
	Interface string
	VIPs      []VIP
	// Repeat is the number of announcements per address in a burst
	// (garp_master_repeat); Delay is the time until the second burst
	// (garp_master_delay, 0 for none); Refresh the period of one more
	// announcement while held (garp_master_refresh, 0 for none), and
	// RefreshRepeat the announcements per address then
	// (garp_master_refresh_repeat, 0 for one).
	Repeat        int
	Delay         time.Duration
	Refresh       time.Duration
	RefreshRepeat int
}

// VIP is one address to hold.
type VIP struct {
	Prefix netip.Prefix
	// Dev is the device to add it to; empty means Config.Interface.
	Dev   string
	Label string
	// PreferredLft is the address's preferred lifetime; nil is forever.
	// 0 deprecates it: the kernel then never picks it as a source.
	PreferredLft *time.Duration
}

// Addresses adds and removes interface addresses. Both are idempotent.
type Addresses interface {
	Add(dev string, v VIP) error
	Del(dev string, p netip.Prefix) error
}

// Sender sends one announcement of addr on dev: a gratuitous ARP request
// for IPv4, an unsolicited Neighbor Advertisement for IPv6.
type Sender interface {
	Announce(dev string, addr netip.Addr) error
}

// Options are an Announcer's collaborators; nil fields get the real ones
// (netlink, raw sockets, the wall clock) in the caller's network namespace.
type Options struct {
	Addresses Addresses
	Sender    Sender
	// Clock schedules the later bursts.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Announcer holds one set of virtual addresses.
type Announcer struct {
	cfg   Config
	addrs Addresses
	send  Sender
	clock clock.Clock
	log   *slog.Logger

	mu     sync.Mutex
	held   bool
	gen    uint64 // invalidates timers of an earlier Acquire
	timers []clock.Timer
	again  clock.Timer // Reannounce's second burst
}

// New returns an Announcer that holds nothing yet.
func New(cfg Config, opt Options) *Announcer {
	a := &Announcer{cfg: cfg, addrs: opt.Addresses, send: opt.Sender, clock: opt.Clock, log: opt.Logger}
	if a.addrs == nil {
		a.addrs = Netlink{}
	}
	if a.send == nil {
		a.send = NewRawSender()
	}
	if a.clock == nil {
		a.clock = clock.Real{}
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	return a
}

func (a *Announcer) dev(v VIP) string {
	if v.Dev != "" {
		return v.Dev
	}
	return a.cfg.Interface
}

// Acquire adds every address and announces them: a burst now, a second
// burst after Delay, and a smaller one (RefreshRepeat) every Refresh until
// Release.
// It adds every address it can and reports all failures.
func (a *Announcer) Acquire() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, v := range a.cfg.VIPs {
		if err := a.addrs.Add(a.dev(v), v); err != nil {
			errs = append(errs, fmt.Errorf("%s: add %s dev %s: %w", a.cfg.Name, v.Prefix, a.dev(v), err))
		}
	}
	a.held = true
	a.stopTimers()
	gen := a.gen
	a.burst(a.cfg.Repeat)
	if a.cfg.Delay > 0 {
		a.after(gen, a.cfg.Delay, func() { a.burst(a.cfg.Repeat) })
	}
	if a.cfg.Refresh > 0 {
		var refresh func()
		n := max(a.cfg.RefreshRepeat, 1)
		refresh = func() {
			a.burst(n)
			a.after(gen, a.cfg.Refresh, refresh)
		}
		a.after(gen, a.cfg.Refresh, refresh)
	}
	return errors.Join(errs...)
}

// Release stops announcing and removes every address.
func (a *Announcer) Release() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopTimers()
	a.held = false
	var errs []error
	for _, v := range a.cfg.VIPs {
		if err := a.addrs.Del(a.dev(v), v.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("%s: remove %s dev %s: %w", a.cfg.Name, v.Prefix, a.dev(v), err))
		}
	}
	return errors.Join(errs...)
}

// HandOver ends a's hold in favour of next, its successor after a reload:
// a stops announcing, and of its addresses those that next holds stay on
// their interface while the others are removed. Call it once next has had
// its chance to Acquire, so that an address both hold is never missing.
func (a *Announcer) HandOver(next *Announcer) error {
	keep := map[string]bool{}
	if next.Held() {
		for _, v := range next.cfg.VIPs {
			keep[next.dev(v)+" "+v.Prefix.String()] = true
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopTimers()
	wasHeld := a.held
	a.held = false
	if !wasHeld {
		return nil
	}
	var errs []error
	for _, v := range a.cfg.VIPs {
		if keep[a.dev(v)+" "+v.Prefix.String()] {
			continue
		}
		if err := a.addrs.Del(a.dev(v), v.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("%s: remove %s dev %s: %w", a.cfg.Name, v.Prefix, a.dev(v), err))
		}
	}
	return errors.Join(errs...)
}

// Reannounce sends n announcements per address now and n more after delay
// (0 for none), while the addresses are held: for a master that heard
// another router claim them.
func (a *Announcer) Reannounce(n int, delay time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.held {
		return
	}
	a.burst(n)
	if delay <= 0 {
		return
	}
	// One pending second burst at a time: a peer that keeps claiming the
	// addresses every interval must not pile up timers.
	if a.again != nil {
		a.again.Stop()
	}
	gen := a.gen
	a.again = a.clock.AfterFunc(delay, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if gen == a.gen && a.held {
			a.burst(n)
		}
	})
}

// Held reports whether the addresses are acquired.
func (a *Announcer) Held() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

func (a *Announcer) stopTimers() {
	for _, t := range a.timers {
		t.Stop()
	}
	a.timers = nil
	if a.again != nil {
		a.again.Stop()
		a.again = nil
	}
	a.gen++
}

// after schedules f unless a later Acquire or Release has superseded gen.
func (a *Announcer) after(gen uint64, d time.Duration, f func()) {
	a.timers = append(a.timers, a.clock.AfterFunc(d, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if gen == a.gen {
			f()
		}
	}))
}

// burst sends n announcements per address, address by address in turn as
// keepalived does, so every address is announced once before any twice.
func (a *Announcer) burst(n int) {
	for range n {
		for _, v := range a.cfg.VIPs {
			if err := a.send.Announce(a.dev(v), v.Prefix.Addr()); err != nil {
				a.log.Warn("cannot announce address", "addr", v.Prefix.Addr(), "dev", a.dev(v), "err", err)
			}
		}
	}
}
