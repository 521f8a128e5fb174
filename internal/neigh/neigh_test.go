package neigh

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"

	"github.com/xlb-project/xlb/internal/testutil"
)

// newResolver builds a Resolver for lb1's eth0 in topo.
func newResolver(t *testing.T, topo *testutil.Topology) *Resolver {
	t.Helper()
	var r *Resolver
	err := topo.Do(testutil.LB1, func() error {
		var err error
		r, err = New("eth0", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestResolve(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces and neighbour entries")
	topo := testutil.NewTopology(t, testutil.TopologyOptions{})
	r := newResolver(t, topo)
	fakeMAC := net.HardwareAddr{2, 0, 0, 0, 0, 0x99}

	// A static entry must win without a probe; a stale one, wrong on
	// purpose, must be checked on the wire.
	topo.Exec(t, testutil.LB1, "ip", "neigh", "replace", testutil.HostIP4(testutil.RS2).String(),
		"lladdr", fakeMAC.String(), "nud", "permanent", "dev", "eth0")
	topo.Exec(t, testutil.LB1, "ip", "neigh", "replace", testutil.HostIP4(testutil.RS3).String(),
		"lladdr", fakeMAC.String(), "nud", "stale", "dev", "eth0")

	tests := []struct {
		name string
		ip   netip.Addr
		want net.HardwareAddr
	}{
		{"ipv4 unknown", testutil.HostIP4(testutil.RS1), testutil.HostMAC(testutil.RS1)},
		{"ipv4 again from the kernel table", testutil.HostIP4(testutil.RS1), testutil.HostMAC(testutil.RS1)},
		{"ipv6 unknown", testutil.HostIP6(testutil.RS1), testutil.HostMAC(testutil.RS1)},
		{"ipv4 permanent entry", testutil.HostIP4(testutil.RS2), fakeMAC},
		{"ipv4 stale wrong entry", testutil.HostIP4(testutil.RS3), testutil.HostMAC(testutil.RS3)},
		{"ipv4-mapped", netip.AddrFrom16(testutil.HostIP4(testutil.RS2).As16()), fakeMAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := r.Resolve(ctx, tt.ip)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want.String() {
				t.Errorf("Resolve(%s) = %s, want %s", tt.ip, got, tt.want)
			}
		})
	}

	// What Resolve learned is in lb1's table, managed, so the kernel keeps
	// it fresh; the administrator's entry is untouched.
	entries := neighbours(t, topo)
	for _, ip := range []netip.Addr{testutil.HostIP4(testutil.RS1), testutil.HostIP6(testutil.RS1), testutil.HostIP4(testutil.RS3)} {
		n, ok := entries[ip]
		if !ok {
			t.Errorf("no kernel entry for %s after Resolve", ip)
			continue
		}
		if n.FlagsExt&netlink.NTF_EXT_MANAGED == 0 {
			t.Errorf("kernel entry for %s is not managed: flags_ext %#x", ip, n.FlagsExt)
		}
	}
	if n := entries[testutil.HostIP4(testutil.RS2)]; n.State != netlink.NUD_PERMANENT || n.HardwareAddr.String() != fakeMAC.String() {
		t.Errorf("permanent entry for rs2 changed to state %#x MAC %s", n.State, n.HardwareAddr)
	}
}

func TestResolveNobody(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces and neighbour entries")
	topo := testutil.NewTopology(t, testutil.TopologyOptions{})
	r := newResolver(t, topo)
	for _, s := range []string{"198.51.100.99", "2001:db8:100::99"} {
		t.Run(s, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
			defer cancel()
			mac, err := r.Resolve(ctx, netip.MustParseAddr(s))
			if err == nil {
				t.Fatalf("Resolve(%s) = %s, want an error", s, mac)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
			}
			for _, want := range []string{s, "eth0", "no answer"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// TestWatchMACChange changes rs1's MAC, as a replaced NIC or migrated VM
// would, and expects Watch on lb1 to report the new one for both families.
func TestWatchMACChange(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces and neighbour entries")
	topo := testutil.NewTopology(t, testutil.TopologyOptions{})
	r := newResolver(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	changes := r.Watch(ctx)

	rs1v4, rs1v6 := testutil.HostIP4(testutil.RS1), testutil.HostIP6(testutil.RS1)
	for _, ip := range []netip.Addr{rs1v4, rs1v6} {
		if _, err := r.Resolve(ctx, ip); err != nil {
			t.Fatal(err)
		}
		waitFor(t, changes, ip, testutil.HostMAC(testutil.RS1))
	}

	newMAC := net.HardwareAddr{2, 0, 0, 0, 0, 0x77}
	// rs1 announces the change itself (arp_notify, ndisc_notify: see
	// scripts/realserver.sh).
	topo.Exec(t, testutil.RS1, "ip", "link", "set", "dev", "eth0", "address", newMAC.String())
	// The kernel ignores an announcement within a second (locktime) of
	// the entry's last update, which Resolve just made: repeat the
	// gratuitous ARP until it lands. IPv6 NAs have no such lock.
	garps := make(chan struct{})
	go func() {
		defer close(garps)
		for ctx.Err() == nil {
			if err := gratuitousARP(topo, testutil.RS1, rs1v4); err != nil {
				t.Log(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	waitForAll(t, changes, map[netip.Addr]net.HardwareAddr{rs1v4: newMAC, rs1v6: newMAC})
	cancel()
	<-garps
	for range changes {
	}
}

// TestWatchRevalidation takes rs2 away without any announcement and brings
// it back with another MAC: only the kernel's revalidation of the managed
// entry can see that, and Watch must report the failure and the new MAC.
func TestWatchRevalidation(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces and neighbour entries")
	if testing.Short() {
		t.Skip("waits for kernel neighbour timers")
	}
	topo := testutil.NewTopology(t, testutil.TopologyOptions{})
	// Shorten lb1's neighbour timers so revalidation happens within
	// seconds instead of the default half minute.
	for _, kv := range []string{
		"net.ipv4.neigh.eth0.base_reachable_time_ms=500",
		"net.ipv4.neigh.eth0.delay_first_probe_time=1",
		"net.ipv4.neigh.eth0.retrans_time_ms=200",
		"net.ipv4.neigh.eth0.ucast_solicit=1",
		"net.ipv4.neigh.eth0.interval_probe_time_ms=500",
	} {
		topo.Exec(t, testutil.LB1, "sysctl", "-qw", kv)
	}
	// No announcement from rs2 this time.
	topo.Exec(t, testutil.RS2, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_notify=0", "net.ipv4.conf.all.arp_notify=0")
	r := newResolver(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	changes := r.Watch(ctx)
	ip := testutil.HostIP4(testutil.RS2)
	if _, err := r.Resolve(ctx, ip); err != nil {
		t.Fatal(err)
	}
	waitFor(t, changes, ip, testutil.HostMAC(testutil.RS2))

	topo.Exec(t, testutil.RS2, "ip", "link", "set", "dev", "eth0", "down")
	waitFor(t, changes, ip, nil)
	newMAC := net.HardwareAddr{2, 0, 0, 0, 0, 0x88}
	topo.Exec(t, testutil.RS2, "ip", "link", "set", "dev", "eth0", "address", newMAC.String(), "up")
	waitFor(t, changes, ip, newMAC)
	cancel()
	for range changes {
	}
}

// waitFor reads changes until ip is reported with mac (nil: failed),
// failing the test if the channel closes first.
func waitFor(t *testing.T, changes <-chan Change, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	waitForAll(t, changes, map[netip.Addr]net.HardwareAddr{ip: mac})
}

func waitForAll(t *testing.T, changes <-chan Change, want map[netip.Addr]net.HardwareAddr) {
	t.Helper()
	var seen []Change
	for len(want) > 0 {
		c, ok := <-changes
		if !ok {
			t.Fatalf("watch ended before reporting %v; saw %v", want, seen)
		}
		seen = append(seen, c)
		if mac, ok := want[c.IP]; ok && mac.String() == c.MAC.String() {
			delete(want, c.IP)
		}
	}
}

func neighbours(t *testing.T, topo *testutil.Topology) map[netip.Addr]netlink.Neigh {
	t.Helper()
	m := make(map[netip.Addr]netlink.Neigh)
	err := topo.Do(testutil.LB1, func() error {
		list, err := netlink.NeighList(0, netlink.FAMILY_ALL)
		for _, n := range list {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				m[a.Unmap()] = n
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// gratuitousARP announces ip with host's current eth0 MAC.
func gratuitousARP(topo *testutil.Topology, host string, ip netip.Addr) error {
	return topo.Do(host, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			return err
		}
		defer c.Close()
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
		if err != nil {
			return err
		}
		return c.WriteTo(p, ethernet.Broadcast)
	})
}
