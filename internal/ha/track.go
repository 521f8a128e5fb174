package ha

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-project/xlb/internal/risefall"
	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// trackedScript is a vrrp_script some instance tracks.
type trackedScript struct {
	cfg   service.VRRPScript
	argv  []string
	users []*vrrp.Instance
}

// scriptKey identifies a vrrp_script across a reload: a changed command or
// user starts without the old verdict.
func scriptKey(sc service.VRRPScript) string {
	return sc.Name + "\x00" + sc.Script + "\x00" + sc.User
}

// runScript runs a vrrp_script every interval, as its user and bounded by
// its timeout, and reports its verdict to the instances tracking it
// whenever the verdict changes (risefall.Counter). A verdict the set carried
// over from a reload is reported at once and stands until the runs
// change it; init_fail applies only to a script without one.
func (s *Set) runScript(ctx context.Context, sc service.VRRPScript, argv []string, report func(good bool), log interface{ Warn(string, ...any) }) {
	interval := max(sc.Interval, 100*time.Millisecond)
	timeout := sc.Timeout
	if timeout <= 0 {
		timeout = interval
	}
	// keepalived's counting: good after rise successes in a row, failed
	// after fall failures in a row. Before the first run the script has
	// no verdict and that run decides either way; with init_fail it
	// starts failed instead and must rise.
	v := risefall.Undecided(sc.Rise, sc.Fall)
	s.mu.Lock()
	good, carried := s.verdicts[scriptKey(sc)]
	s.mu.Unlock()
	switch {
	case carried:
		v = risefall.New(sc.Rise, sc.Fall, good)
		report(good)
	case sc.InitFail:
		v = risefall.New(sc.Rise, sc.Fall, false)
		report(false)
	}
	run := func() error {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st, err := script.Command{Args: argv, User: sc.User}.Run(rctx)
		if err != nil {
			return err
		}
		return st.Err()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			err := run()
			if ctx.Err() != nil {
				return
			}
			if good, changed := v.Add(err == nil); changed {
				if !good {
					log.Warn("vrrp_script failing", "err", err)
				}
				report(good)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// trackInterfaces reports the link state (operationally up, with carrier)
// of the named interfaces, now and at every change, from one netlink
// subscription: a tracked interface going down moves an instance to FAULT
// or lowers its priority, as its weight says.
func (s *Set) trackInterfaces(ctx context.Context, names []string, report func(name string, up bool), log interface{ Warn(string, ...any) }) {
	if len(names) == 0 {
		return
	}
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		log.Warn("track_interface: cannot follow link state", "err", err)
		return
	}
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		report(name, err == nil && linkUp(l))
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if name := u.Link.Attrs().Name; slices.Contains(names, name) {
					report(name, linkUp(u.Link))
				}
			}
		}
	}()
}

func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
}
