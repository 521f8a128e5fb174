package ha

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/clock/clocktest"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// fakeConn stands in for an instance's VRRP socket: it records the
// priorities the instance advertises, and its reader waits until Close.
type fakeConn struct {
	t     *testing.T
	iface string
	local netip.Addr

	mu     sync.Mutex
	prios  []int
	closed bool
	done   chan struct{}
}

func (c *fakeConn) ReadFrom([]byte) (int, netip.Addr, netip.Addr, int, error) {
	<-c.done
	return 0, netip.Addr{}, netip.Addr{}, 0, net.ErrClosed
}

func (c *fakeConn) WriteTo(b []byte, dst netip.Addr) error {
	a, err := vrrp.Parse(b, c.local, dst)
	if err != nil {
		c.t.Errorf("%s: sent an invalid packet %x: %v", c.iface, b, err)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prios = append(c.prios, int(a.Priority))
	return nil
}

func (c *fakeConn) LocalAddr() netip.Addr { return c.local }

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

// priorities returns and forgets the priorities advertised so far.
func (c *fakeConn) priorities() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.prios
	c.prios = nil
	return p
}

func (c *fakeConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// fakeHost is a host whose connections, clock, addresses, announcements
// and notify scripts are all recorded.
type fakeHost struct {
	t     *testing.T
	clock *clocktest.Fake
	// failListen makes listening on that interface fail.
	failListen string

	mu    sync.Mutex
	conns []*fakeConn
	log   []string // address changes, announcements and scripts, in order
}

func newFakeHost(t *testing.T) *fakeHost {
	return &fakeHost{t: t, clock: clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
}

func (h *fakeHost) host() host {
	return host{
		listen: func(c vrrp.ConnConfig) (vrrp.Conn, error) {
			if c.Interface == h.failListen {
				return nil, errors.New("no such device")
			}
			conn := &fakeConn{t: h.t, iface: c.Interface, local: netip.MustParseAddr("198.51.100.2"), done: make(chan struct{})}
			h.mu.Lock()
			defer h.mu.Unlock()
			h.conns = append(h.conns, conn)
			return conn, nil
		},
		clock:  h.clock,
		addrs:  h,
		sender: h,
		scripts: func(user string, _ *slog.Logger) scriptRunner {
			return runAs{h, user}
		},
	}
}

func (h *fakeHost) add(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

func (h *fakeHost) Add(dev string, v announce.VIP) error {
	h.add("add %s dev %s", v.Prefix, dev)
	return nil
}

func (h *fakeHost) Del(dev string, p netip.Prefix) error {
	h.add("del %s dev %s", p, dev)
	return nil
}

func (h *fakeHost) Announce(dev string, a netip.Addr) error {
	h.add("announce %s dev %s", a, dev)
	return nil
}

// take returns and forgets what happened so far.
func (h *fakeHost) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.log
	h.log = nil
	return l
}

// runAs records the notify scripts run as user.
type runAs struct {
	h    *fakeHost
	user string
}

func (r runAs) Run(argv []string) { r.h.add("run as %s: %s", r.user, strings.Join(argv, " ")) }
