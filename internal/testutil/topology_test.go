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
	"golang.org/x/sys/unix"
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
		{RS4, "203.0.113.140", "2001:db8:400::140", "02:00:00:00:00:14"},
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

// TestTopologyTunnel builds the tunnel topology and checks rs4's side of
// tunnel mode without a balancer: lb1 sends it hand-built IPIP and GUE
// packets, each wrapping a ping from the client to the VIP, and the client
// must get the answer from the VIP straight from rs4 through rtr.
func TestTopologyTunnel(t *testing.T) {
	RequireRoot(t, netnsReason)
	opts := TopologyOptions{VIPOn: LB1, Tunnel: true, DecapObj: TunnelDecapObj(t)}
	topo := NewTopology(t, opts)

	link := topo.Exec(t, RS4, "ip", "-br", "link", "show", "dev", "eth0")
	if !strings.Contains(link, HostMAC(RS4).String()) {
		t.Errorf("rs4 eth0 is %q, want MAC %s", link, HostMAC(RS4))
	}
	lo := topo.Exec(t, RS4, "ip", "-br", "addr", "show", "dev", "lo")
	for _, a := range []string{VIP4.String() + "/32", VIP6.String() + "/128"} {
		if !strings.Contains(lo, a) {
			t.Errorf("rs4 lo addresses %q lack %s", lo, a)
		}
	}
	for _, dst := range []netip.Addr{RS4IP4, RS4IP6} {
		if err := ping(topo, LB1, dst); err != nil {
			t.Error(err)
		}
	}
	// The answers to clients go through rtr, and leave room for the
	// outer header in the MSS they advertise.
	for _, tt := range []struct{ dst, via, mss string }{
		{HostIP4(Client).String(), "via 203.0.113.129", "advmss 1400"},
		{HostIP6(Client).String(), "via 2001:db8:400::1", "advmss 1380"},
	} {
		out := topo.Exec(t, RS4, "ip", "route", "get", tt.dst)
		if !strings.Contains(out, tt.via) || !strings.Contains(out, tt.mss) {
			t.Errorf("rs4's route to the client %s is %q, want %s with %s", tt.dst, out, tt.via, tt.mss)
		}
	}

	gue0 := func(proto uint8) []byte { return []byte{0, proto, 0, 0} }
	tests := []struct {
		name  string
		v6    bool
		proto uint8  // outer protocol
		gue   []byte // nil: no GUE; empty: variant 1 (direct IP)
		port  uint16 // GUE port; 0 for GUEPort
		// refused is set where rs4 must not answer: what reaches the
		// client then is not the work of some other path.
		refused bool
	}{
		{"ipip", false, 4, nil, 0, false},
		{"gue variant 0 over IPv4", false, ProtoUDP, gue0(4), 0, false},
		{"gue variant 1 over IPv4", false, ProtoUDP, []byte{}, 0, false},
		{"ip6ip6", true, 41, nil, 0, false},
		{"gue variant 0 over IPv6", true, ProtoUDP, gue0(41), 0, false},
		{"gue variant 1 over IPv6", true, ProtoUDP, []byte{}, 0, false},
		{"gue on another port", false, ProtoUDP, gue0(4), GUEPort + 1, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uint16(0x7800 + i)
			inner := Frame{Src: HostIP4(Client), Dst: VIP4, Proto: ProtoICMP, ICMPType: 8, ICMPRest: uint32(id)<<16 | 1, Payload: []byte("xlb tunnel")}
			outer := Frame{SrcMAC: HostMAC(LB1), DstMAC: HostMAC(Router), Src: HostIP4(LB1), Dst: RS4IP4, Proto: tt.proto}
			if tt.v6 {
				inner = Frame{Src: HostIP6(Client), Dst: VIP6, Proto: ProtoICMPv6, ICMPType: 128, ICMPRest: uint32(id)<<16 | 1, Payload: []byte("xlb tunnel")}
				outer.Src, outer.Dst = HostIP6(LB1), RS4IP6
			}
			outer.Payload = inner.IP()
			if tt.gue != nil {
				outer.SrcPort, outer.DstPort = 40000+uint16(i), GUEPort
				if tt.port != 0 {
					outer.DstPort = tt.port
				}
				outer.Payload = append(append([]byte(nil), tt.gue...), outer.Payload...)
			}
			wait := 5 * time.Second
			if tt.refused {
				wait = time.Second
			}
			answered, err := tunnelPing(topo, outer.Bytes(), inner.Dst, id, wait)
			switch {
			case err != nil:
				t.Fatal(err)
			case answered && tt.refused:
				t.Errorf("the client got an answer from %s to a packet rs4 must not decapsulate", inner.Dst)
			case !answered && !tt.refused:
				t.Errorf("no echo reply from %s in the client within %v of sending it tunnelled to rs4", inner.Dst, wait)
			}
		})
	}

	t.Run("up again changes nothing", func(t *testing.T) {
		before := snapshotHosts(t, topo, RS4, Router, LB1)
		if err := topo.Up(opts); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, snapshotHosts(t, topo, RS4, Router, LB1)); diff != "" {
			t.Errorf("second up changed the topology (-before +after):\n%s", diff)
		}
	})

	t.Run("down", func(t *testing.T) {
		if err := topo.Down(); err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob("/run/netns/" + topo.Prefix + "*"); len(left) > 0 {
			t.Errorf("namespaces left after down: %v", left)
		}
	})
}

// tunnelPing sends frame, an encapsulated echo request from the client to
// vip, out of lb1's eth0 until the client hears the echo reply with id from
// vip, for up to wait; it reports whether the reply came.
func tunnelPing(topo *Topology, frame []byte, vip netip.Addr, id uint16, wait time.Duration) (bool, error) {
	network, proto, reply := "ip4:icmp", 1, icmp.Type(ipv4.ICMPTypeEchoReply)
	if vip.Is6() {
		network, proto, reply = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	if err := topo.Do(Client, func() error {
		var err error
		c, err = icmp.ListenPacket(network, "")
		return err
	}); err != nil {
		return false, fmt.Errorf("listen for echo replies in the client: %w", err)
	}
	defer c.Close()
	var fd int
	var ifindex int
	if err := topo.Do(LB1, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		return false, fmt.Errorf("packet socket in lb1: %w", err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
			return false, fmt.Errorf("send from lb1: %w", err)
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break // send again
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != reply || from.String() != vip.String() {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == int(id) {
				return true, nil
			}
		}
	}
	return false, nil
}

// snapshotHosts is snapshot for the given hosts.
func snapshotHosts(t *testing.T, topo *Topology, hosts ...string) map[string]string {
	t.Helper()
	s := make(map[string]string)
	for _, h := range hosts {
		var b strings.Builder
		for _, args := range [][]string{{"-o", "link"}, {"-o", "addr"}, {"route"}, {"-6", "route"}} {
			out, err := exec.Command("ip", append([]string{"-n", topo.NS(h)}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("ip -n %s %v: %v\n%s", topo.NS(h), args, err, out)
			}
			b.Write(out)
		}
		s[h] = b.String()
	}
	return s
}
