package neigh

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestSetPicksTheInterface: each address is resolved on the interface the
// kernel routes it out of, the first interface when none of the set's is
// named, and Ifindex tells which; a change heard on another interface
// than an address's is not reported for it.
func TestSetPicksTheInterface(t *testing.T) {
	testutil.EnterNewNetns(t)
	macs := map[string]net.HardwareAddr{}
	index := map[string]int{}
	for i, arm := range []struct{ name, addr string }{{"arm0", "198.51.100.2/24"}, {"arm1", "203.0.113.130/25"}} {
		mac := net.HardwareAddr{2, 0, 0, 0, 9, byte(i)}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: arm.name, HardwareAddr: mac}, PeerName: arm.name + "p"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName(arm.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(arm.addr)
		if err := netlink.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		index[arm.name] = l.Attrs().Index
		macs[arm.name] = mac
	}
	static := func(dev, ip string, mac net.HardwareAddr) {
		t.Helper()
		err := netlink.NeighSet(&netlink.Neigh{LinkIndex: index[dev], Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP(ip), HardwareAddr: mac})
		if err != nil {
			t.Fatal(err)
		}
	}
	rsA, rsB := netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("203.0.113.141")
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 0, 0x11}, net.HardwareAddr{2, 0, 0, 0, 0, 0x14}
	static("arm0", rsA.String(), macA)
	static("arm1", rsB.String(), macB)
	// The same address, a wrong MAC, on the other segment: never asked.
	static("arm0", rsB.String(), macA)

	s, err := NewSet([]string{"arm0", "arm1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if got := s.Ifindex(rsA); got != 0 {
		t.Errorf("Ifindex before Resolve: %d, want 0", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := map[netip.Addr]string{}
	for _, ip := range []netip.Addr{rsA, rsB} {
		mac, err := s.Resolve(ctx, ip)
		if err != nil {
			t.Fatal(err)
		}
		got[ip] = mac.String()
	}
	if diff := cmp.Diff(map[netip.Addr]string{rsA: macA.String(), rsB: macB.String()}, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("MACs (-want +got):\n%s", diff)
	}
	if a, b := s.Ifindex(rsA), s.Ifindex(rsB); a != uint32(index["arm0"]) || b != uint32(index["arm1"]) {
		t.Errorf("Ifindex: %s on %d, %s on %d; want %d and %d", rsA, a, rsB, b, index["arm0"], index["arm1"])
	}
	if r := s.of(netip.MustParseAddr("192.0.2.99")); r != s.rs[0] {
		t.Errorf("an address with no route resolves on %s, want the first interface", r.iface().Name)
	}

	// rsB's entry changes on arm0, then on arm1: only arm1's is its.
	changes := s.Watch(ctx)
	mac0, mac1 := net.HardwareAddr{2, 0, 0, 0, 0, 0x44}, net.HardwareAddr{2, 0, 0, 0, 0, 0x55}
	static("arm0", rsB.String(), mac0)
	static("arm1", rsB.String(), mac1)
	// Everything reported for rsB until a while after its own change.
	var seen []string
	var settle <-chan time.Time
	for {
		select {
		case ch := <-changes:
			if ch.IP != rsB {
				continue
			}
			seen = append(seen, ch.MAC.String())
			if ch.MAC.String() == mac1.String() && settle == nil {
				settle = time.After(500 * time.Millisecond)
			}
			continue
		case <-settle:
		case <-ctx.Done():
		}
		break
	}
	for _, m := range seen {
		if m != macB.String() && m != mac1.String() {
			t.Errorf("reported %s for %s, an entry of another segment (all: %v)", m, rsB, seen)
		}
	}
	if len(seen) == 0 || seen[len(seen)-1] != mac1.String() {
		t.Errorf("reports for %s: %v, want the change on its own interface, %s, last", rsB, seen, mac1)
	}
}
