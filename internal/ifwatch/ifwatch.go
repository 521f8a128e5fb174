// Package ifwatch follows network interfaces by name: their index and
// its MAC, which change under a running daemon when a bond fails over,
// when someone runs `ip link set address`, or when the interface is
// deleted and created again. The XDP program holds the interface's MAC as
// a constant and its link is bound to an index, so the daemon must hear of
// both, for each interface it serves.
package ifwatch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// State is the interface as last seen; Index 0 means it is gone.
type State struct {
	// Name is the interface's, as Watch was given it.
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// Gone reports whether the interface does not exist.
func (s State) Gone() bool { return s.Index == 0 }

// update is what a netlink link message says of one interface.
type update struct {
	deleted bool
	name    string
	index   int
	mac     net.HardwareAddr
}

// next applies u to the interface called name, last seen as last, and
// reports whether its index or MAC changed.
func next(name string, last State, u update) (State, bool) {
	switch {
	case u.deleted && u.index == last.Index && !last.Gone():
		return State{}, true
	case u.deleted || u.name != name:
		return last, false
	case u.index != last.Index || !slices.Equal(u.mac, last.MAC):
		return State{Index: u.index, MAC: slices.Clone(u.mac)}, true
	}
	return last, false
}

// Watch reports the interface called name, now and then at every change of
// its index or MAC, until ctx ends; the channel is closed then. The
// subscription lives in the network namespace of the calling thread.
func Watch(ctx context.Context, name string, log *slog.Logger) (<-chan State, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { log.Warn("interface watch", "interface", name, "err", err) },
	})
	if err != nil {
		return nil, fmt.Errorf("interface %s: watch: %w", name, err)
	}
	var last State
	if l, err := netlink.LinkByName(name); err == nil {
		last = State{Index: l.Attrs().Index, MAC: slices.Clone(l.Attrs().HardwareAddr)}
	}
	last.Name = name
	out := make(chan State, 1)
	out <- last
	go func() {
		defer close(out)
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				a := u.Attrs()
				var changed bool
				last, changed = next(name, last, update{
					deleted: u.Header.Type == unix.RTM_DELLINK,
					name:    a.Name, index: a.Index, mac: a.HardwareAddr,
				})
				if !changed {
					continue
				}
				last.Name = name
				select {
				case out <- last:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// WatchEach is Watch for each of names, on one channel: each State names
// its interface. The channel is closed once ctx ends.
func WatchEach(ctx context.Context, names []string, log *slog.Logger) (<-chan State, error) {
	out := make(chan State, len(names))
	var wg sync.WaitGroup
	for _, name := range names {
		in, err := Watch(ctx, name, log)
		if err != nil {
			return nil, err // the watches started end with ctx
		}
		wg.Go(func() {
			for st := range in {
				select {
				case out <- st:
				case <-ctx.Done():
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// Program is what must fit the interface: the XDP program, attached to
// its index, with its MAC as a constant (*datapath.Datapath).
type Program interface {
	// Reattach attaches it to the interface's new index.
	Reattach() error
	// SetMAC gives it the interface's new MAC.
	SetMAC(net.HardwareAddr) error
}

// Fit makes p fit the interface called name, now st and last seen as last,
// and logs what it did: an interface that is gone took the program with it
// and is waited for; one that came back gets the program attached again; a
// new MAC goes into the program.
func Fit(p Program, name string, last, st State, log *slog.Logger) {
	if st.Gone() {
		log.Warn("interface gone: the program went with it; it is attached again when the interface returns", "interface", name)
		return
	}
	fitted := func(what string, err error) {
		if err != nil {
			log.Error("the program does not fit its interface as it is now", "interface", name, "err", err)
		} else {
			log.Info(what, "interface", name, "mac", st.MAC.String())
		}
	}
	if st.Index != last.Index {
		fitted("interface back: program attached again", p.Reattach())
	}
	if !slices.Equal(st.MAC, last.MAC) {
		fitted("interface MAC changed: the program takes frames to the new one", p.SetMAC(st.MAC))
	}
}
