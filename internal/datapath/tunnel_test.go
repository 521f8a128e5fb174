package datapath

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlb-project/xlb/internal/testutil"
)

// The tunnel tests' own network: the balancer's interface lbIf (a veth
// whose peer stands for the next-hop router gw), real servers a hop or
// more behind gw, and a second arm for a route leaving elsewhere.
var (
	macLBIf  = macAddr{0x02, 0x00, 0x00, 0x00, 0x03, 0x02}
	macGW    = macAddr{0x02, 0x00, 0x00, 0x00, 0x03, 0x01}
	macArm   = macAddr{0x02, 0x00, 0x00, 0x00, 0x04, 0x02}
	macArmGW = macAddr{0x02, 0x00, 0x00, 0x00, 0x04, 0x01}

	lbIf4  = netip.MustParsePrefix("203.0.113.2/24")
	gw4    = netip.MustParseAddr("203.0.113.1")
	rsTun4 = netip.MustParseAddr("192.0.2.200")
	lbIf6  = netip.MustParsePrefix("2001:db8:300::2/64")
	gw6    = netip.MustParseAddr("2001:db8:300::1")
	rsTun6 = netip.MustParseAddr("2001:db8:400::20")

	arm4    = netip.MustParsePrefix("198.51.100.2/24")
	armGW4  = netip.MustParseAddr("198.51.100.1")
	rsArm4  = netip.MustParseAddr("192.0.2.201")
	rsNoGW4 = netip.MustParseAddr("192.0.2.202") // routed via a gateway with no neighbour entry
	noGW4   = netip.MustParseAddr("203.0.113.99")
)

// tunnelNet is the tunnel tests' namespace, built around a loaded
// program: the thread stays in the namespace until the test ends, since
// the FIB the program asks is the test run's namespace's.
type tunnelNet struct {
	d             *Datapath
	lb, arm       netlink.Link
	lbIdx, armIdx int
	ns            netns.NsHandle
}

// enter moves a subtest's goroutine (t.Run starts a new one, on any
// thread) into the namespace until the subtest ends.
func (n *tunnelNet) enter(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(n.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("back to the original namespace: %v", err)
			return // the thread stays locked and dies with the goroutine
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
}

func newTunnelNet(t testing.TB) *tunnelNet {
	t.Helper()
	n := newTunnelNS(t)
	n.d = newDatapath(t, Options{})
	// The second arm is one of the program's interfaces, as Attach
	// makes every interface of a two-arm balancer.
	if err := n.d.addTxPort(n.armIdx, macArm[:]); err != nil {
		t.Fatal(err)
	}
	return n
}

// newTunnelNS moves the test into a new namespace holding the tunnel
// tests' interfaces, routes and neighbours; the caller loads programs.
func newTunnelNS(t testing.TB) *tunnelNet {
	t.Helper()
	testutil.EnterNewNetns(t)
	n := &tunnelNet{}
	var err error
	if n.ns, err = netns.Get(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.ns.Close() })
	n.lb = vethWith(t, "xlbt0", "xlbt1", macLBIf)
	n.arm = vethWith(t, "xlbt2", "xlbt3", macArm)
	addAddr(t, n.lb, lbIf4)
	addAddr(t, n.lb, lbIf6)
	addAddr(t, n.arm, arm4)
	n.lbIdx, n.armIdx = n.lb.Attrs().Index, n.arm.Attrs().Index
	neighbour(t, n.lb, gw4, macGW)
	neighbour(t, n.lb, gw6, macGW)
	neighbour(t, n.arm, armGW4, macArmGW)
	route(t, n.lb, netip.PrefixFrom(rsTun4, 32), gw4, 0)
	route(t, n.lb, netip.PrefixFrom(rsTun6, 128), gw6, 0)
	route(t, n.arm, netip.PrefixFrom(rsArm4, 32), armGW4, 0)
	route(t, n.lb, netip.PrefixFrom(rsNoGW4, 32), noGW4, 0)
	for _, kv := range [][2]string{
		{"/proc/sys/net/ipv4/conf/all/forwarding", "1"},
		{"/proc/sys/net/ipv6/conf/all/forwarding", "1"},
	} {
		sysctl(t, kv[0], kv[1])
	}
	return n
}

// sysctl writes a value under /proc/sys of the thread's namespace.
func sysctl(t testing.TB, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
}

func vethWith(t testing.TB, name, peer string, mac macAddr) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.HardwareAddr = net.HardwareAddr(mac[:])
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	for _, n := range []string{name, peer} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatalf("up %s: %v", n, err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func addAddr(t testing.TB, l netlink.Link, p netip.Prefix) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = 0x2 // IFA_F_NODAD: usable at once
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatalf("address %v: %v", p, err)
	}
}

func neighbour(t testing.TB, l netlink.Link, ip netip.Addr, mac macAddr) {
	t.Helper()
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT,
		IP: ip.AsSlice(), HardwareAddr: net.HardwareAddr(mac[:])}); err != nil {
		t.Fatalf("neighbour %v: %v", ip, err)
	}
}

func route(t testing.TB, l netlink.Link, dst netip.Prefix, gw netip.Addr, mtu int) {
	t.Helper()
	// A route's MTU binds forwarding only when locked (or with
	// ip_forward_use_pmtu), as "ip route ... mtu lock N" sets it.
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), MTU: mtu, MTULock: mtu != 0,
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}}
	if err := netlink.RouteReplace(r); err != nil {
		t.Fatalf("route %v via %v: %v", dst, gw, err)
	}
}

// run passes frame through the program as if it arrived on ifindex.
func (n *tunnelNet) run(t *testing.T, ifindex int, frame []byte) (uint32, []byte) {
	t.Helper()
	ret, out, err := runIn(n.d, ifindex, frame)
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, out
}

// runIn runs d's program on frame as if it arrived on ifindex (of the
// calling thread's namespace), and returns the frame as the program left
// it, grown or cut.
func runIn(d *Datapath, ifindex int, frame []byte) (uint32, []byte, error) {
	opts := &ebpf.RunOptions{
		Data: frame, DataOut: make([]byte, len(frame)+256),
		Context: xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)},
	}
	ret, err := d.objs.XlbXdp.Run(opts)
	return ret, opts.DataOut, err
}

// tunnelService is vip4:80/tcp, vip4:53/udp, vip6:80/tcp each served by
// the one backend be (id 1, 2 and 3 with be's tunnel for each family).
func (n *tunnelNet) serve(t *testing.T, tun4, tun6 *Tunnel) {
	t.Helper()
	one := func(addr netip.Addr, port uint16, proto uint8, id uint32) ServiceTable {
		return ServiceTable{Key: ServiceKey{Addr: addr, Port: port, Proto: proto}, Service: Service{ID: id}, Table: patterned(7, id)}
	}
	apply(t, n.d, Txn{
		Backends: map[uint32]Backend{1: {Service: 1, Tunnel: tun4}, 2: {Service: 2, Tunnel: tun4}, 3: {Service: 3, Tunnel: tun6}},
		Services: []ServiceTable{one(vip4, 80, ipProtoTCP, 1), one(vip4, 53, ipProtoUDP, 2), one(vip6, 80, ipProtoTCP, 3)},
	})
}

// encap is the frame the program must send for inner (an Ethernet frame
// as received): new MACs, the outer header (and GUE), the inner IP
// packet unchanged. Built here from the RFCs, not from the program's
// steps: checksums are summed over the whole packet.
func encap(inner []byte, tun Tunnel, dmac, smac macAddr, sport uint16, flowLabel uint32) []byte {
	l2 := l2Len(inner)
	ip := inner[l2:]
	var ipLen int
	if tun.Dst.Is4() {
		ipLen = int(binary.BigEndian.Uint16(ip[2:]))
	} else {
		ipLen = 40 + int(binary.BigEndian.Uint16(ip[4:]))
	}
	ip = ip[:ipLen]
	var udp []byte
	proto := uint8(4)
	if tun.Dst.Is6() {
		proto = 41
	}
	if tun.Encap == EncapGUE {
		udp = make([]byte, 12)
		binary.BigEndian.PutUint16(udp[0:], sport)
		binary.BigEndian.PutUint16(udp[2:], tun.Port)
		binary.BigEndian.PutUint16(udp[4:], uint16(12+len(ip)))
		udp[9] = proto // GUE proto_ctype: the inner packet's protocol
		proto = 17
	}
	payload := append(udp, ip...)
	var outer []byte
	if tun.Dst.Is4() {
		outer = make([]byte, 20)
		outer[0] = 0x45
		outer[1] = ip[1] // TOS
		binary.BigEndian.PutUint16(outer[2:], uint16(20+len(payload)))
		copy(outer[4:6], ip[4:6])             // id
		outer[6] = ip[6] & 0x40               // DF only
		outer[8], outer[9] = ip[8], proto     // TTL, protocol
		copy(outer[12:16], tun.Src.AsSlice()) // source
		copy(outer[16:20], tun.Dst.AsSlice()) // destination
		binary.BigEndian.PutUint16(outer[10:], checksum(outer))
	} else {
		outer = make([]byte, 40)
		tc := binary.BigEndian.Uint32(ip) & 0x0ff00000
		binary.BigEndian.PutUint32(outer, 0x60000000|tc|flowLabel)
		binary.BigEndian.PutUint16(outer[4:], uint16(len(payload)))
		outer[6], outer[7] = proto, ip[7]
		copy(outer[8:24], tun.Src.AsSlice())
		copy(outer[24:40], tun.Dst.AsSlice())
	}
	if tun.Encap == EncapGUE && tun.Csum {
		// The checksum the packet would have with its inner checksums
		// right: what the program computes without reading the payload.
		// Zero where that cannot be known.
		if fixed, ok := fixedInner(ip); ok {
			whole := append(append([]byte{}, payload[:12]...), fixed...)
			binary.BigEndian.PutUint16(payload[6:], l4Checksum(tun.Src, tun.Dst, ipProtoUDP, whole))
		}
	}
	f := append(append([]byte{}, dmac[:]...), smac[:]...)
	f = append(f, inner[12:l2]...) // tag, if any, and EtherType
	f = append(append(f, outer...), payload...)
	return append(f, inner[l2+ipLen:]...) // padding stays padding
}

// l2Len is the length of a frame's Ethernet header and its one tag.
func l2Len(frame []byte) int {
	if et := binary.BigEndian.Uint16(frame[12:]); et == tpid8021Q || et == tpidQinQ {
		return 18
	}
	return 14
}

// fixedInner is the IP packet ip with its IPv4 header checksum and its
// TCP, UDP or ICMP checksum made right; false for a packet whose
// checksum the outer one cannot rest on: a fragment, UDP over IPv4
// without a checksum, another protocol.
func fixedInner(ip []byte) ([]byte, bool) {
	ip = append([]byte{}, ip...)
	var src, dst netip.Addr
	var proto uint8
	var l4 []byte
	if ip[0]>>4 == 4 {
		if binary.BigEndian.Uint16(ip[6:])&(ipMF|0x1fff) != 0 {
			return nil, false
		}
		hl := int(ip[0]&0xf) * 4
		src, dst, proto = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), ip[9]
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], checksum(ip[:hl]))
		l4 = ip[hl:]
	} else {
		src, dst, proto = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])), ip[6]
		l4 = ip[40:]
	}
	icmp := uint8(ipProtoICMP)
	if src.Is6() {
		icmp = ipProtoICMPv6
	}
	off, ok := map[uint8]int{ipProtoTCP: 16, ipProtoUDP: 6, icmp: 2}[proto]
	if !ok || len(l4) < off+2 {
		return nil, false
	}
	if proto == ipProtoUDP && src.Is4() && binary.BigEndian.Uint16(l4[6:]) == 0 {
		return nil, false
	}
	l4[off], l4[off+1] = 0, 0
	var c uint16
	if proto == ipProtoICMP {
		c = checksum(l4)
	} else {
		c = l4Checksum(src, dst, proto, l4)
	}
	binary.BigEndian.PutUint16(l4[off:], c)
	return ip, true
}

// spreadHash is the program's spread_hash: what picks a flow's GUE
// source port and IPv6 flow label.
func spreadHash(f Flow) uint32 {
	var x uint32
	for _, w := range f.bpf6().words() {
		x ^= w
	}
	x *= 0x9E3779B1
	return x ^ x>>15
}

func gueSport(h uint32) uint16 { return uint16(49152 + (uint64(h)*16384)>>32) }

func TestTunnelEncap(t *testing.T) {
	n := newTunnelNet(t)
	ipip4 := &Tunnel{Encap: EncapIPIP, Dst: rsTun4, Src: lbIf4.Addr()}
	ipip6 := &Tunnel{Encap: EncapIPIP, Dst: rsTun6, Src: lbIf6.Addr()}
	gue4 := &Tunnel{Encap: EncapGUE, Dst: rsTun4, Src: lbIf4.Addr(), Port: 6080}
	gue4c := &Tunnel{Encap: EncapGUE, Dst: rsTun4, Src: lbIf4.Addr(), Port: 6080, Csum: true}
	gue6c := &Tunnel{Encap: EncapGUE, Dst: rsTun6, Src: lbIf6.Addr(), Port: 6081, Csum: true}
	web := tcp4(41000, thACK|thPSH).with(func(p *pkt) { p.payload = []byte("GET / HTTP/1.1\r\n\r\n") })
	tests := []struct {
		name       string
		tun4, tun6 *Tunnel
		p          pkt
	}{
		{"ipip tcp4", ipip4, ipip6, web},
		{"ipip tcp4 syn, padded", ipip4, ipip6, tcp4(41001, thSYN).with(func(p *pkt) { p.pad = 6 })},
		{"ipip tcp6", ipip4, ipip6, tcp6(41002, thSYN)},
		{"ipip udp4", ipip4, ipip6, udp4(5353)},
		{"ipip 802.1Q tcp4 keeps its tag", ipip4, ipip6, web.with(func(p *pkt) { p.tags = []vlanTag{{tpid: tpid8021Q, tci: 100}} })},
		{"gue tcp4", gue4, ipip6, web},
		{"gue tcp4 csum", gue4c, ipip6, web},
		{"gue udp4 csum", gue4c, ipip6, udp4(5354)},
		{"gue udp4 without its own checksum: zero", gue4c, ipip6, udp4(5355).with(func(p *pkt) { p.zeroCsum = true })},
		{"gue tcp6 csum", gue4, gue6c, tcp6(41003, thACK)},
		{"gue 802.1Q tcp6 csum", gue4, gue6c, tcp6(41004, thACK).with(func(p *pkt) { p.tags = []vlanTag{{tpid: tpid8021Q, tci: 7}} })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n.enter(t)
			n.serve(t, tc.tun4, tc.tun6)
			in := tc.p.build()
			verdict, out := n.run(t, n.lbIdx, in)
			if verdict != verdictTX {
				t.Fatalf("verdict %d, want XDP_TX (%d); counters %v", verdict, verdictTX, counters(t, n.d))
			}
			tun := *tc.tun4
			if tc.p.dstIP.Is6() {
				tun = *tc.tun6
			}
			h := spreadHash(tc.p.flow())
			want := encap(in, tun, macGW, macLBIf, gueSport(h), h&0xfffff)
			if diff := cmp.Diff(want, out[:len(want)]); diff != "" {
				t.Errorf("frame (-want +got):\n%s", diff)
			}
			if c := outerUDPChecksum(out, want); tun.Encap == EncapGUE && tun.Csum && !tc.p.zeroCsum && c == 0 {
				t.Errorf("outer UDP checksum is zero with csum set")
			}
		})
	}
}

// outerUDPChecksum reads the outer UDP checksum of an encapsulated frame
// laid out like want.
func outerUDPChecksum(out, want []byte) uint16 {
	l2 := l2Len(want)
	ipl := 20
	if want[l2]>>4 == 6 {
		ipl = 40
	}
	return binary.BigEndian.Uint16(out[l2+ipl+6:])
}

// TestGUESourcePortSpread: every flow keeps one source port, and flows
// spread over the dynamic range, so a real server's NIC spreads them over
// its queues.
func TestGUESourcePortSpread(t *testing.T) {
	n := newTunnelNet(t)
	n.serve(t, &Tunnel{Encap: EncapGUE, Dst: rsTun4, Src: lbIf4.Addr(), Port: 6080}, &Tunnel{Encap: EncapIPIP, Dst: rsTun6, Src: lbIf6.Addr()})
	ports := map[uint16]int{}
	const flows = 256
	for i := range flows {
		var first uint16
		for j := range 2 {
			verdict, out := n.run(t, n.lbIdx, tcp4(uint16(20000+i), thACK).build())
			if verdict != verdictTX {
				t.Fatalf("flow %d: verdict %d", i, verdict)
			}
			sport := binary.BigEndian.Uint16(out[14+20:])
			if sport < 49152 {
				t.Fatalf("flow %d: source port %d outside the dynamic range", i, sport)
			}
			if j == 0 {
				first = sport
				ports[sport]++
			} else if sport != first {
				t.Fatalf("flow %d: source port %d, then %d", i, first, sport)
			}
		}
	}
	// 256 flows into 16384 ports: a uniform spread leaves about 2 pairs
	// sharing a port; a constant or a few bits of entropy leaves many.
	if len(ports) < flows*9/10 {
		t.Errorf("%d flows used only %d source ports", flows, len(ports))
	}
}

// TestTunnelRoute: what the FIB answers decides the verdict; a frame the
// program cannot send passes to the kernel unchanged, with its reason
// counted.
func TestTunnelRoute(t *testing.T) {
	n := newTunnelNet(t)
	tests := []struct {
		name    string
		dst     netip.Addr
		setup   func(t *testing.T)
		verdict uint32
		counter Counter
		noDF    bool
	}{
		{name: "no route", dst: netip.MustParseAddr("192.0.2.250"), verdict: verdictPass, counter: CounterPassTunNoRoute},
		{name: "no neighbour", dst: rsNoGW4, verdict: verdictPass, counter: CounterPassTunNoNeigh},
		{name: "route MTU below the encapsulated packet, no DF", dst: rsTun4, verdict: verdictPass, counter: CounterPassTunTooBig,
			setup: func(t *testing.T) { route(t, n.lb, netip.PrefixFrom(rsTun4, 32), gw4, 100) }, noDF: true},
		{name: "forwarding off on the interface", dst: rsTun4, verdict: verdictPass, counter: CounterPassTunFwdOff,
			setup: func(t *testing.T) {
				route(t, n.lb, netip.PrefixFrom(rsTun4, 32), gw4, 0)
				sysctl(t, "/proc/sys/net/ipv4/conf/xlbt0/forwarding", "0")
				t.Cleanup(func() { sysctl(t, "/proc/sys/net/ipv4/conf/xlbt0/forwarding", "1") })
			}},
		{name: "route through the other arm: redirect", dst: rsArm4, verdict: verdictRedirect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n.enter(t)
			if tc.setup != nil {
				tc.setup(t)
			}
			n.serve(t, &Tunnel{Encap: EncapIPIP, Dst: tc.dst, Src: lbIf4.Addr()}, &Tunnel{Encap: EncapIPIP, Dst: rsTun6, Src: lbIf6.Addr()})
			in := tcp4(42000, thACK).with(func(p *pkt) {
				p.payload = make([]byte, 100)
				if tc.noDF {
					p.frag = 0
				}
			}).build()
			before := counters(t, n.d)
			verdict, out := n.run(t, n.lbIdx, in)
			if verdict != tc.verdict {
				t.Fatalf("verdict %d, want %d; counters %v", verdict, tc.verdict, counterDelta(before, counters(t, n.d)))
			}
			want := map[Counter]uint64{}
			if tc.verdict == verdictPass {
				want[tc.counter] = 1
			}
			got := counterDelta(before, counters(t, n.d))
			delete(got, CounterFlowNew)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if verdict == verdictPass {
				if diff := cmp.Diff(in, out[:len(in)]); diff != "" {
					t.Errorf("passed frame changed (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestTunnelRouteCache: the FIB's answer is kept for a backend (struct
// nexthop) and still holds the packet to the route's MTU; a changed
// tunnel is routed afresh at once, not when the answer ages out.
func TestTunnelRouteCache(t *testing.T) {
	n := newTunnelNet(t)
	route(t, n.lb, netip.PrefixFrom(rsTun4, 32), gw4, 200)
	ipip := &Tunnel{Encap: EncapIPIP, Dst: rsTun4, Src: lbIf4.Addr()}
	ipip6 := &Tunnel{Encap: EncapIPIP, Dst: rsTun6, Src: lbIf6.Addr()}
	n.serve(t, ipip, ipip6)
	small := tcp4(43000, thACK).with(func(p *pkt) { p.payload = make([]byte, 100) })
	big := small.with(func(p *pkt) { p.payload = make([]byte, 200); p.frag = 0 })
	// Small, then big (without DF: passed), then small, faster than an
	// atime unit (64 jiffies): the second and third are answered from the
	// cache.
	for i, tc := range []struct {
		p       pkt
		verdict uint32
	}{{small, verdictTX}, {big, verdictPass}, {small, verdictTX}} {
		before := counters(t, n.d)
		if v, _ := n.run(t, n.lbIdx, tc.p.build()); v != tc.verdict {
			t.Fatalf("packet %d: verdict %d, want %d (counters %v)", i, v, tc.verdict, counterDelta(before, counters(t, n.d)))
		}
		if tc.verdict == verdictPass {
			if d := counterDelta(before, counters(t, n.d)); d[CounterPassTunTooBig] != 1 {
				t.Errorf("packet %d: counters %v, want pass_tun_too_big", i, d)
			}
		}
	}
	n.serve(t, &Tunnel{Encap: EncapIPIP, Dst: rsArm4, Src: lbIf4.Addr()}, ipip6)
	if v, _ := n.run(t, n.lbIdx, small.build()); v != verdictRedirect {
		t.Errorf("after the tunnel moved to the other arm: verdict %d, want XDP_REDIRECT", v)
	}
}

// TestTunnelTooBig: a packet that would not fit the route once
// encapsulated is answered as a router would answer it, from the VIP,
// with what fits: path-MTU discovery of the client then sends smaller
// packets, as it does through IPVS's tunnels.
func TestTunnelTooBig(t *testing.T) {
	n := newTunnelNet(t)
	route(t, n.lb, netip.PrefixFrom(rsTun4, 32), gw4, 1000)
	route(t, n.lb, netip.PrefixFrom(rsTun6, 128), gw6, 1300)
	n.serve(t, &Tunnel{Encap: EncapIPIP, Dst: rsTun4, Src: lbIf4.Addr()}, &Tunnel{Encap: EncapGUE, Dst: rsTun6, Src: lbIf6.Addr(), Port: 6080})
	big4 := tcp4(44000, thACK).with(func(p *pkt) { p.payload = make([]byte, 1000) })
	big6 := tcp6(44001, thACK).with(func(p *pkt) { p.payload = make([]byte, 1260) })
	tagged := big4.with(func(p *pkt) { p.sport++; p.tags = []vlanTag{{tpid: tpid8021Q, tci: 100}} })
	for _, tc := range []struct {
		name string
		p    pkt
		mtu  uint32
	}{
		{"ipv4 fragmentation needed", big4, 1000 - 20},
		{"ipv4 tagged", tagged, 1000 - 20},
		{"ipv6 packet too big, never below 1280", big6, 1280},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.enter(t)
			in := tc.p.build()
			before := counters(t, n.d)
			verdict, out := n.run(t, n.lbIdx, in)
			if verdict != verdictTX {
				t.Fatalf("verdict %d, want XDP_TX", verdict)
			}
			if d := counterDelta(before, counters(t, n.d)); d[CounterTunTooBigSent] != 1 || d[CounterFlowNew] != 1 || len(d) != 2 {
				t.Errorf("counters %v, want one new flow answered", d)
			}
			want := tooBigReply(in, tc.mtu)
			if diff := cmp.Diff(want, out[:len(want)]); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

// tooBigReply is the ICMP error a router sends for the frame in, built
// from RFC 792/1191 and RFC 4443.
func tooBigReply(in []byte, mtu uint32) []byte {
	l2 := l2Len(in)
	ip := in[l2:]
	var quoted, icmp, hdr []byte
	if ip[0]>>4 == 4 {
		src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		quoted = ip[:28]
		icmp = []byte{3, 4, 0, 0, 0, 0, byte(mtu >> 8), byte(mtu)}
		binary.BigEndian.PutUint16(icmp[2:], checksum(icmp, quoted))
		hdr = ipv4Header(dst, src, 1, 0, nil, len(icmp)+len(quoted))
		binary.BigEndian.PutUint16(hdr[4:], 0) // id
		hdr[10], hdr[11] = 0, 0
		binary.BigEndian.PutUint16(hdr[10:], checksum(hdr))
	} else {
		src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		quoted = ip[:48]
		icmp = binary.BigEndian.AppendUint32([]byte{2, 0, 0, 0}, mtu)
		binary.BigEndian.PutUint16(icmp[2:], l4Checksum(dst, src, 58, append(append([]byte{}, icmp...), quoted...)))
		hdr = ipv6Header(dst, src, 58, len(icmp)+len(quoted))
		binary.BigEndian.PutUint32(hdr[0:], 6<<28) // no flow label
	}
	f := append(append([]byte{}, in[6:12]...), in[0:6]...)
	f = append(f, in[12:l2]...)
	f = append(f, hdr...)
	f = append(f, icmp...)
	return append(f, quoted...)
}
