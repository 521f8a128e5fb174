package srcaddr

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestSource: with a VIP on the interface that the kernel would pick as
// the source toward a real server (an IPv6 /128 in the servers' /64), a
// probe binds to the interface's own address instead; where the kernel's
// choice is no VIP (IPv4's primary address), it keeps it.
func TestSource(t *testing.T) {
	testutil.EnterNewNetns(t)
	// New interfaces' IPv6 addresses usable at once, without DAD.
	for _, k := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xs0"}, PeerName: "xs1"}); err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByName("xs0")
	if err != nil {
		t.Fatal(err)
	}
	// Up first, and with its carrier: IPv6 addresses of a link without one
	// stay tentative, and no source could be had.
	for _, l := range []string{"xs0", "xs1"} {
		l, _ := netlink.LinkByName(l)
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"198.51.100.5/24", "198.51.100.99/32", "2001:db8:100::5/64", "2001:db8:100::99/128"} {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			t.Fatal(err)
		}
	}
	dst6 := netip.MustParseAddr("2001:db8:100::11")
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The link-local address may come first: wait for the global ones.
		if src, ok := kernelSource(dst6); ok && !src.IsLinkLocalUnicast() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no IPv6 source toward the real server's /64 after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var v Picker
	v.SetVIPs([]netip.Addr{netip.MustParseAddr("198.51.100.99"), netip.MustParseAddr("2001:db8:100::99")})
	for _, tc := range []struct{ dst, want string }{
		{"2001:db8:100::11", "2001:db8:100::5"},
		{"198.51.100.11", ""}, // the kernel picks 198.51.100.5, no VIP
	} {
		got, err := v.Override(netip.MustParseAddr(tc.dst))
		if err != nil {
			t.Fatal(err)
		}
		if (tc.want == "" && got.IsValid()) || (tc.want != "" && got != netip.MustParseAddr(tc.want)) {
			t.Errorf("override toward %s: %v, want %q", tc.dst, got, tc.want)
		}
	}
	// A tunnel's outer source is always a concrete address, never a VIP.
	for _, tc := range []struct{ dst, want string }{
		{"2001:db8:100::11", "2001:db8:100::5"},
		{"198.51.100.11", "198.51.100.5"},
	} {
		got, err := v.Source(netip.MustParseAddr(tc.dst))
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("source toward %s: %v, %v; want %s", tc.dst, got, err, tc.want)
		}
	}
	if _, err := v.Source(netip.MustParseAddr("203.0.113.1")); err == nil {
		t.Errorf("source toward an address without a route: no error")
	}
	// The next hop: the address itself on a connected network, the
	// gateway beyond it.
	gw := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP("198.51.100.1"), Dst: &net.IPNet{IP: net.ParseIP("203.0.113.0"), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.RouteAdd(gw); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dst, want string }{
		{"198.51.100.11", "198.51.100.11"},
		{"203.0.113.20", "198.51.100.1"},
		{"2001:db8:100::11", "2001:db8:100::11"},
	} {
		got, err := NextHop(netip.MustParseAddr(tc.dst))
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("next hop toward %s: %v, %v; want %s", tc.dst, got, err, tc.want)
		}
	}
	if _, err := NextHop(netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Errorf("next hop without a route: no error")
	}

	// Tunnels serves a server once its next hop is resolved; one
	// without a route, or whose next hop is not, is reported instead,
	// and so is an interface that does not forward.
	tun := []netip.Addr{netip.MustParseAddr("203.0.113.20"), netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("192.0.2.1")}
	resolved := func(a netip.Addr) bool { return a == netip.MustParseAddr("198.51.100.1") }
	for _, fwd := range []string{"1", "0"} {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/xs0/forwarding", []byte(fwd), 0o644); err != nil {
			t.Fatal(err)
		}
		srcs, errs := v.Tunnels("xs0", tun, resolved)
		want := map[netip.Addr]netip.Addr{tun[0]: netip.MustParseAddr("198.51.100.5")}
		if len(srcs) != 1 || srcs[tun[0]] != want[tun[0]] {
			t.Errorf("forwarding %s: sources %v, want %v", fwd, srcs, want)
		}
		wantErrs := 2 // 198.51.100.11's next hop is itself, unresolved; 192.0.2.1 has no route
		if fwd == "0" {
			wantErrs++
		}
		if len(errs) != wantErrs {
			t.Errorf("forwarding %s: reports %v, want %d", fwd, errs, wantErrs)
		}
	}
	// Without VIPs to avoid, the kernel's choice stands; it is the VIP.
	var none Picker
	if got, _ := none.Override(netip.MustParseAddr("2001:db8:100::11")); got.IsValid() {
		t.Errorf("with no VIPs: %v, want the kernel's choice", got)
	}
	if src, _ := kernelSource(netip.MustParseAddr("2001:db8:100::11")); src != netip.MustParseAddr("2001:db8:100::99") {
		t.Errorf("the kernel's choice is %v, not the VIP: the test shows nothing", src)
	}
}
