package testutil

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func TestUniquePrefix(t *testing.T) {
	seen := make(map[string]bool)
	for _, name := range []string{"TestA", "TestA", "TestB/sub", strings.Repeat("x", 300)} {
		p := uniquePrefix(name)
		if n := len(p + "client"); n > 15 {
			t.Errorf("uniquePrefix(%q) = %q: %d characters with a host name, want at most 15", name, p, n)
		}
		if seen[p] {
			t.Errorf("uniquePrefix(%q) = %q, returned before", name, p)
		}
		seen[p] = true
	}
}

func TestHostAddresses(t *testing.T) {
	tests := []struct {
		host     string
		ip4, ip6 string
		mac      string
	}{
		{Client, "198.51.100.10", "2001:db8:100::10", "02:00:00:00:00:10"},
		{LB1, "198.51.100.2", "2001:db8:100::2", "02:00:00:00:00:02"},
		{LB2, "198.51.100.3", "2001:db8:100::3", "02:00:00:00:00:03"},
		{RS1, "198.51.100.11", "2001:db8:100::11", "02:00:00:00:00:11"},
		{RS3, "198.51.100.13", "2001:db8:100::13", "02:00:00:00:00:13"},
	}
	for _, tt := range tests {
		got := []string{HostIP4(tt.host).String(), HostIP6(tt.host).String(), HostMAC(tt.host).String()}
		if diff := cmp.Diff([]string{tt.ip4, tt.ip6, tt.mac}, got); diff != "" {
			t.Errorf("%s addresses (-want +got):\n%s", tt.host, diff)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "topology.sh")); err != nil {
		t.Errorf("RepoRoot() = %s, which has no scripts/topology.sh: %v", root, err)
	}
}

func TestBuildBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	first := BuildBinary(t, "./internal/testutil/cmd/rsserver")
	if again := BuildBinary(t, "./internal/testutil/cmd/rsserver"); again != first {
		t.Errorf("second BuildBinary = %s, want the first build %s", again, first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, first, "-http", "", "-echo", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nothing to serve") {
		t.Errorf("built rsserver with nothing to serve: err %v, output %q; want its usage error", err, out)
	}
}

// TestTopology builds a topology and checks what topology.sh promises:
// addresses, MACs, reachability, the VIP owner, idempotent re-runs,
// recovery from a half-broken state and a clean teardown.
func TestTopology(t *testing.T) {
	RequireRoot(t, netnsReason)
	opts := TopologyOptions{VIPOn: LB1}
	if obj := filepath.Join(MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o"); fileExists(obj) {
		opts.XDPPassObj = obj
	}
	topo := NewTopology(t, opts)

	for _, h := range Hosts {
		link := topo.Exec(t, h, "ip", "-br", "link", "show", "dev", "eth0")
		if !strings.Contains(link, HostMAC(h).String()) {
			t.Errorf("%s eth0 is %q, want MAC %s", h, link, HostMAC(h))
		}
		addr := topo.Exec(t, h, "ip", "-br", "addr", "show", "dev", "eth0")
		for _, a := range []netip.Addr{HostIP4(h), HostIP6(h)} {
			if !strings.Contains(addr, a.String()+"/") {
				t.Errorf("%s eth0 addresses %q lack %s", h, addr, a)
			}
		}
		if off := topo.Exec(t, h, "ethtool", "-k", "eth0"); !strings.Contains(off, "tx-checksumming: off") {
			t.Errorf("%s eth0: tx checksum offload is not off", h)
		}
	}
	if opts.XDPPassObj != "" {
		for _, port := range []string{LB1, LB2} {
			out, err := exec.Command("ip", "-n", topo.Prefix+"br", "link", "show", "dev", port).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "prog/xdp") {
				t.Errorf("bridge port %s has no XDP program: %v\n%s", port, err, out)
			}
		}
	}

	for _, dst := range []netip.Addr{HostIP4(RS1), HostIP6(RS1), HostIP4(LB2), VIP4, VIP6} {
		if err := ping(topo, Client, dst); err != nil {
			t.Error(err)
		}
	}
	// rs1 holds the VIP on lo too; arp_ignore keeps it from answering, so
	// the client's neighbour entry for the VIP must be lb1's.
	if mac, err := neighMAC(topo, Client, VIP4); err != nil || mac.String() != HostMAC(LB1).String() {
		t.Errorf("client resolved VIP %s to %v (%v), want lb1's %s", VIP4, mac, err, HostMAC(LB1))
	}
	rsAddr := topo.Exec(t, RS1, "ip", "-br", "addr", "show", "dev", "lo")
	for _, a := range []string{VIP4.String() + "/32", VIP6.String() + "/128"} {
		if !strings.Contains(rsAddr, a) {
			t.Errorf("rs1 lo addresses %q lack %s", rsAddr, a)
		}
	}

	t.Run("up again changes nothing", func(t *testing.T) {
		before := snapshot(t, topo)
		if err := topo.Up(opts); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, snapshot(t, topo)); diff != "" {
			t.Errorf("second up changed the topology (-before +after):\n%s", diff)
		}
	})

	t.Run("up repairs", func(t *testing.T) {
		if out, err := exec.Command("ip", "netns", "del", topo.NS(RS2)).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if out, err := exec.Command("ip", "-n", topo.Prefix+"br", "link", "del", "br0").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if err := topo.Up(opts); err != nil {
			t.Fatal(err)
		}
		for _, dst := range []netip.Addr{HostIP4(RS2), HostIP4(RS3)} {
			if err := ping(topo, Client, dst); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("down", func(t *testing.T) {
		p := topo.Start(t, RS1, "sleep", "600")
		if err := topo.Down(); err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob("/run/netns/" + topo.Prefix + "*"); len(left) > 0 {
			t.Errorf("namespaces left after down: %v", left)
		}
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Error("a process in rs1 survived down")
		}
		if err := topo.Down(); err != nil {
			t.Errorf("down on nothing: %v", err)
		}
	})
}

func TestDo(t *testing.T) {
	RequireRoot(t, netnsReason)
	topo := NewTopology(t, TopologyOptions{})
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	var mac net.HardwareAddr
	err = topo.Do(RS2, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if mac.String() != HostMAC(RS2).String() {
		t.Errorf("eth0 inside Do(rs2) has MAC %s, want %s", mac, HostMAC(RS2))
	}
	wantErr := fmt.Errorf("from fn")
	if err := topo.Do(RS2, func() error { return wantErr }); err != wantErr {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	// Do must not leave this goroutine's thread elsewhere.
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Errorf("network namespace changed across Do: %s, then %s", before, after)
	}
}

// snapshot records what `up` sets, with interface indexes, so a recreated
// device shows up as a change.
func snapshot(t *testing.T, topo *Topology) map[string]string {
	t.Helper()
	s := make(map[string]string)
	for _, h := range append([]string{"br"}, Hosts...) {
		ns := topo.Prefix + h
		var b strings.Builder
		for _, args := range [][]string{{"-o", "link"}, {"-o", "addr"}, {"route"}, {"-6", "route"}} {
			out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("ip -n %s %v: %v\n%s", ns, args, err, out)
			}
			b.Write(out)
		}
		s[h] = b.String()
	}
	return s
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ping sends one ICMP echo from host to dst and waits for the reply.
func ping(topo *Topology, host string, dst netip.Addr) error {
	return topo.Do(host, func() error {
		network, proto, typ, reply := "ip4:icmp", 1, icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
		if dst.Is6() {
			network, proto, typ, reply = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
		}
		c, err := icmp.ListenPacket(network, "")
		if err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, host, err)
		}
		defer c.Close()
		msg, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0x7862, Seq: 1, Data: []byte("xlb")}}).Marshal(nil)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		c.SetDeadline(deadline)
		for time.Now().Before(deadline) {
			if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
				return fmt.Errorf("ping %s from %s: %w", dst, host, err)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 1500)
			for {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					break // resend after a second without a reply
				}
				m, err := icmp.ParseMessage(proto, buf[:n])
				if err != nil || m.Type != reply || from.String() != dst.String() {
					continue
				}
				if e, ok := m.Body.(*icmp.Echo); ok && e.ID == 0x7862 {
					return nil
				}
			}
		}
		return fmt.Errorf("ping %s from %s: no reply within 5s", dst, host)
	})
}

func neighMAC(topo *Topology, host string, ip netip.Addr) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := topo.Do(host, func() error {
		neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.IP.Equal(ip.AsSlice()) {
				mac = n.HardwareAddr
				return nil
			}
		}
		return fmt.Errorf("%s has no neighbour entry for %s", host, ip)
	})
	return mac, err
}
