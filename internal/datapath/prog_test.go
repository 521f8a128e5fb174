package datapath

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// Service ids of the standard setup. Each service forwards to a backend of
// its own, so a frame's new destination MAC names the service it matched.
const (
	svcTCP4     = 1 // vip4:80/tcp -> backend 1
	svcUDP4     = 2 // vip4:53/udp -> backend 2
	svcTCP6     = 3 // vip6:80/tcp -> backend 3
	svcUDP6     = 4 // vip6:53/udp -> backend 4
	svcAllPorts = 5 // vip4b:0/tcp (every port) -> backend 5
	svcPort8080 = 6 // vip4b:8080/tcp, beside the port-0 one -> backend 6
)

var (
	stdServices = []uint32{svcTCP4, svcUDP4, svcTCP6, svcUDP6, svcAllPorts, svcPort8080}
	stdBackends = []uint32{1, 2, 3, 4, 5, 6}
)

// stdSetup is the standard services of the table-driven cases. Table sizes
// differ on purpose: the program must use each service's own size.
func stdSetup() Txn {
	one := func(addr netip.Addr, port uint16, proto uint8, id uint32, size int) ServiceTable {
		return ServiceTable{
			Key:     ServiceKey{Addr: addr, Port: port, Proto: proto},
			Service: Service{ID: id},
			Table:   patterned(size, id),
		}
	}
	return Txn{
		Backends: ownBackends(stdBackends...),
		Services: []ServiceTable{
			one(vip4, 80, ipProtoTCP, svcTCP4, 251),
			one(vip4, 53, ipProtoUDP, svcUDP4, 13),
			one(vip6, 80, ipProtoTCP, svcTCP6, 509),
			one(vip6, 53, ipProtoUDP, svcUDP6, 7),
			one(vip4b, 0, ipProtoTCP, svcAllPorts, 251),
			one(vip4b, 8080, ipProtoTCP, svcPort8080, 1),
		},
	}
}

// newStdDatapath is a data path with stdSetup applied.
func newStdDatapath(t *testing.T) *Datapath {
	d := newDatapath(t, Options{})
	apply(t, d, stdSetup())
	return d
}

// Base frames: a client behind the router sends to a VIP.
func tcp4(sport uint16, flags uint8) pkt {
	return pkt{
		dst: macLB, src: macRouter, srcIP: client4, dstIP: vip4,
		proto: ipProtoTCP, sport: sport, dport: 80, flags: flags, frag: ipDF,
	}
}

func tcp6(sport uint16, flags uint8) pkt {
	return pkt{
		dst: macLB, src: macRouter, srcIP: client6, dstIP: vip6,
		proto: ipProtoTCP, sport: sport, dport: 80, flags: flags,
	}
}

func udp4(sport uint16) pkt {
	return pkt{
		dst: macLB, src: macRouter, srcIP: client4, dstIP: vip4,
		proto: ipProtoUDP, sport: sport, dport: 53, payload: []byte("query"),
	}
}

func udp6(sport uint16) pkt {
	return pkt{
		dst: macLB, src: macRouter, srcIP: client6, dstIP: vip6,
		proto: ipProtoUDP, sport: sport, dport: 53, payload: []byte("query"),
	}
}

func newFlow() map[Counter]uint64 { return map[Counter]uint64{CounterFlowNew: 1} }

func TestForward(t *testing.T) {
	d := newStdDatapath(t)
	tagged := func(tpid uint16, vid uint16) func(*pkt) {
		return func(p *pkt) { p.tags = []vlanTag{{tpid: tpid, tci: vid}} }
	}
	tests := []struct {
		name  string
		steps []step
	}{{
		name: "tcp4 SYN then ACK",
		steps: []step{
			{p: tcp4(40000, thSYN), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
			{p: tcp4(40000, thACK), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst},
		},
	}, {
		name: "tcp6 SYN then ACK",
		steps: []step{
			{p: tcp6(40000, thSYN), verdict: verdictTX, backend: 3, svc: svcTCP6, state: FlowSYN, counters: newFlow()},
			{p: tcp6(40000, thACK), verdict: verdictTX, backend: 3, svc: svcTCP6, state: FlowEst},
		},
	}, {
		name: "tcp4 with payload",
		steps: []step{
			{p: tcp4(40001, thACK|thPSH).with(func(p *pkt) { p.payload = []byte("GET / HTTP/1.1\r\n\r\n") }),
				verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst, counters: newFlow()},
		},
	}, {
		name: "udp4 first and second datagram",
		steps: []step{
			{p: udp4(5353), verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
			{p: udp4(5353), verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP},
		},
	}, {
		name: "udp6 first and second datagram",
		steps: []step{
			{p: udp6(5353), verdict: verdictTX, backend: 4, svc: svcUDP6, state: FlowUDP, counters: newFlow()},
			{p: udp6(5353), verdict: verdictTX, backend: 4, svc: svcUDP6, state: FlowUDP},
		},
	}, {
		name: "802.1Q tcp4 keeps its tag",
		steps: []step{
			{p: tcp4(40002, thSYN).with(tagged(tpid8021Q, 100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
			{p: tcp4(40002, thACK).with(tagged(tpid8021Q, 100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst},
		},
	}, {
		name: "802.1ad single tag tcp4",
		steps: []step{
			{p: tcp4(40003, thSYN).with(tagged(tpidQinQ, 0x2000|200)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
		},
	}, {
		name: "802.1Q tcp6",
		steps: []step{
			{p: tcp6(40004, thSYN).with(tagged(tpid8021Q, 4094)), verdict: verdictTX, backend: 3, svc: svcTCP6, state: FlowSYN, counters: newFlow()},
		},
	}, {
		name: "802.1Q udp6",
		steps: []step{
			{p: udp6(40005).with(tagged(tpid8021Q, 7)), verdict: verdictTX, backend: 4, svc: svcUDP6, state: FlowUDP, counters: newFlow()},
		},
	}, {
		name: "ipv4 options IHL 6",
		steps: []step{
			{p: tcp4(40006, thSYN).with(func(p *pkt) { p.ipOpts = []byte{1, 1, 1, 0} }), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
		},
	}, {
		name: "ipv4 options IHL 15",
		steps: []step{
			// Record route with room for 9 addresses: 39 bytes and an EOL.
			{p: udp4(40007).with(func(p *pkt) { p.ipOpts = append([]byte{7, 39, 4}, make([]byte, 37)...) }),
				verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
		},
	}, {
		name: "ethernet padding beyond tot_len is forwarded as is",
		steps: []step{
			{p: tcp4(40008, thACK).with(func(p *pkt) { p.pad = 6 }), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst, counters: newFlow()},
		},
	}, {
		name: "ipv6 with padding beyond payload_len",
		steps: []step{
			{p: udp6(40009).with(func(p *pkt) { p.pad = 3 }), verdict: verdictTX, backend: 4, svc: svcUDP6, state: FlowUDP, counters: newFlow()},
		},
	}, {
		name: "port-0 service takes any port",
		steps: []step{
			{p: tcp4(40010, thSYN).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 22 }), verdict: verdictTX, backend: 5, svc: svcAllPorts, state: FlowSYN, counters: newFlow()},
			{p: tcp4(40010, thSYN).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 65535 }), verdict: verdictTX, backend: 5, svc: svcAllPorts, state: FlowSYN, counters: newFlow()},
			{p: tcp4(40010, thSYN).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 0 }), verdict: verdictTX, backend: 5, svc: svcAllPorts, state: FlowSYN, counters: newFlow()},
		},
	}, {
		name: "specific port wins over port 0",
		steps: []step{
			{p: tcp4(40011, thSYN).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 8080 }), verdict: verdictTX, backend: 6, svc: svcPort8080, state: FlowSYN, counters: newFlow()},
			{p: tcp4(40011, thSYN).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 8081 }), verdict: verdictTX, backend: 5, svc: svcAllPorts, state: FlowSYN, counters: newFlow()},
		},
	}, {
		name: "port-0 tcp service does not take udp",
		steps: []step{
			{p: udp4(40012).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 8080 }), verdict: verdictPass, counters: map[Counter]uint64{CounterPassNotVIP: 1}},
		},
	}, {
		name: "mid-stream ACK of an unknown flow is scheduled (restart, failover)",
		steps: []step{
			{p: tcp4(40013, thACK), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst, counters: newFlow()},
		},
	}, {
		name: "RST of an unknown flow is forwarded and closes it",
		steps: []step{
			{p: tcp4(40014, thRST), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowClose, counters: newFlow()},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearFlows(t, d)
			for i, s := range tc.steps {
				t.Logf("step %d", i)
				s.check(t, d, stdServices, stdBackends)
			}
		})
	}
}

// TestForwardZeroMAC: without a configured MAC the frame's destination
// (the interface's own address for unicast) becomes its source.
func TestForwardZeroMAC(t *testing.T) {
	d := newDatapath(t, Options{MAC: make([]byte, 6)})
	apply(t, d, stdSetup())
	p := tcp4(41000, thSYN).with(func(p *pkt) { p.dst = macAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55} })
	verdict, out := run(t, d, p.build())
	if verdict != verdictTX {
		t.Fatalf("verdict %d, want %d", verdict, verdictTX)
	}
	want := p.forwarded(p.dst, backendMAC(1))
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("frame out (-want +got):\n%s", diff)
	}
}

// patched builds p and lets fn change the bytes from off on.
func patched(p pkt, off int, fn func(b []byte)) []byte {
	b := p.build()
	fn(b[off:])
	return b
}

func TestPass(t *testing.T) {
	d := newStdDatapath(t)
	count := func(c Counter) map[Counter]uint64 { return map[Counter]uint64{c: 1} }
	const l3 = 14 // IP header offset in an untagged frame
	tests := []struct {
		name  string
		frame []byte
		why   Counter
	}{
		{"arp who-has vip", arpRequest(macRouter, client4, vip4), CounterPassNotIP},
		{"802.1Q arp", arpRequest(macRouter, client4, vip4, vlanTag{tpid8021Q, 10}), CounterPassNotIP},
		{"lldp", rawEther(macAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, macRouter, etLLDP, make([]byte, 46)), CounterPassNotIP},
		{"two tags (QinQ) are not parsed", tcp4(1, thSYN).with(func(p *pkt) {
			p.tags = []vlanTag{{tpidQinQ, 100}, {tpid8021Q, 200}}
		}).build(), CounterPassNotIP},
		{"vrrp advertisement", pkt{dst: macAddr{0x01, 0, 0x5e, 0, 0, 0x12}, src: macRouter, srcIP: other4,
			dstIP: netip.MustParseAddr("224.0.0.18"), proto: ipProtoVRRP, payload: []byte{0x31, 1, 100, 1, 0, 1, 0, 0, 192, 0, 2, 10}}.build(), CounterPassNotL4},
		{"vrrp to the vip address", pkt{dst: macLB, src: macRouter, srcIP: other4, dstIP: vip4,
			proto: ipProtoVRRP, payload: make([]byte, 12)}.build(), CounterPassNotL4},
		{"icmp echo to vip", tcp4(7, 0).with(func(p *pkt) { p.proto = ipProtoICMP }).build(), CounterPassNotL4},
		{"icmpv6 echo to vip", tcp6(7, 0).with(func(p *pkt) { p.proto = ipProtoICMPv6 }).build(), CounterPassNotL4},
		{"sctp to vip", tcp4(7, 0).with(func(p *pkt) { p.proto = 132; p.payload = make([]byte, 12) }).build(), CounterPassNotL4},
		{"ipv4 middle fragment without its first (MF, offset 185)", udp4(1).with(func(p *pkt) { p.frag = ipMF | 185; p.raw = true }).build(), CounterPassFragNoFirst},
		{"ipv4 last fragment without its first (offset 185)", udp4(1).with(func(p *pkt) { p.frag = 185; p.raw = true }).build(), CounterPassFragNoFirst},
		{"ipv6 later fragment without its first", udp6(1).with(func(p *pkt) {
			p.frag6, p.raw, p.payload = &frag6Hdr{offset: 32, id: 42}, true, make([]byte, 16)
		}).build(), CounterPassFragNoFirst},
		{"ipv4 first fragment to no vip", udp4(1).with(func(p *pkt) { p.frag, p.dstIP = ipMF, other4 }).build(), CounterPassNotVIP},
		{"ipv4 later fragment to no vip", udp4(1).with(func(p *pkt) { p.frag, p.dstIP, p.raw = 185, other4, true }).build(), CounterPassNotVIP},
		{"ipv6 later fragment to no vip", udp6(1).with(func(p *pkt) {
			p.frag6, p.raw, p.dstIP = &frag6Hdr{offset: 32, id: 42}, true, other6
		}).build(), CounterPassNotVIP},
		{"ipv4 fragment of icmp to vip", tcp4(7, 0).with(func(p *pkt) { p.proto, p.frag = ipProtoICMP, ipMF }).build(), CounterPassNotL4},
		{"ipv6 fragment header before another extension header", udp6(1).with(func(p *pkt) {
			p.proto, p.frag6, p.raw, p.payload = ipProtoDstOpts, &frag6Hdr{more: true, id: 42}, true, ipv6Ext(ipProtoUDP)
		}).build(), CounterPassFragment},
		{"ipv6 fragment header cut short by payload_len", patched(udp6(1).with(func(p *pkt) {
			p.frag6, p.raw, p.payload = &frag6Hdr{offset: 32, id: 42}, true, make([]byte, 16)
		}), l3, func(b []byte) { binary.BigEndian.PutUint16(b[4:], 7) }), CounterPassMalformed},
		{"ipv6 hop-by-hop header", tcp6(1, thSYN).with(func(p *pkt) { p.proto = ipProtoHopOpts; p.payload = ipv6Ext(ipProtoTCP) }).build(), CounterPassFragment},
		{"ipv6 routing header", tcp6(1, thSYN).with(func(p *pkt) { p.proto = ipProtoRouting; p.payload = ipv6Ext(ipProtoTCP) }).build(), CounterPassFragment},
		{"ipv6 destination options", tcp6(1, thSYN).with(func(p *pkt) { p.proto = ipProtoDstOpts; p.payload = ipv6Ext(ipProtoTCP) }).build(), CounterPassFragment},
		{"unknown vip port", tcp4(1, thSYN).with(func(p *pkt) { p.dport = 81 }).build(), CounterPassNotVIP},
		{"udp to a tcp-only port", udp4(1).with(func(p *pkt) { p.dport = 80 }).build(), CounterPassNotVIP},
		{"tcp to a udp-only port", tcp4(1, thSYN).with(func(p *pkt) { p.dport = 53 }).build(), CounterPassNotVIP},
		{"non-vip address", tcp4(1, thSYN).with(func(p *pkt) { p.dstIP = other4 }).build(), CounterPassNotVIP},
		{"vip syn to the other balancer's mac (flood, promiscuous)", tcp4(1, thSYN).with(func(p *pkt) { p.dst = macRouter }).build(), CounterPassOtherHost},
		{"vip ack to the broadcast mac", tcp4(1, thACK).with(func(p *pkt) { p.dst = macAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }).build(), CounterPassOtherHost},
		{"802.1Q vip udp to another mac", udp4(1).with(tagged8021Q).with(func(p *pkt) { p.dst = macRouter }).build(), CounterPassOtherHost},
		{"lb's own address, ssh", tcp4(1, thSYN).with(func(p *pkt) { p.dstIP, p.dport = netip.MustParseAddr("192.0.2.1"), 22 }).build(), CounterPassNotVIP},
		{"non-vip ipv6 address", tcp6(1, thSYN).with(func(p *pkt) { p.dstIP = netip.MustParseAddr("2001:db8::11") }).build(), CounterPassNotVIP},
		{"ipv6 vip on an ipv4-only port", tcp6(1, thSYN).with(func(p *pkt) { p.dport = 8080 }).build(), CounterPassNotVIP},
		{"ipv4 tot_len larger than the frame", patched(tcp4(1, thSYN), l3, func(b []byte) {
			binary.BigEndian.PutUint16(b[2:], 41)
		}), CounterPassMalformed},
		{"ipv4 tot_len 65535", patched(tcp4(1, thSYN), l3, func(b []byte) {
			binary.BigEndian.PutUint16(b[2:], 0xffff)
		}), CounterPassMalformed},
		{"ipv4 tot_len shorter than its header", patched(tcp4(1, thSYN), l3, func(b []byte) {
			binary.BigEndian.PutUint16(b[2:], 19)
		}), CounterPassMalformed},
		{"ipv4 tot_len shorter than IHL*4 with options", patched(tcp4(1, thSYN).with(func(p *pkt) { p.ipOpts = make([]byte, 8) }), l3, func(b []byte) {
			binary.BigEndian.PutUint16(b[2:], 24)
		}), CounterPassMalformed},
		{"ipv4 IHL 4", patched(tcp4(1, thSYN), l3, func(b []byte) { b[0] = 0x44 }), CounterPassMalformed},
		{"ipv4 IHL 0", patched(tcp4(1, thSYN), l3, func(b []byte) { b[0] = 0x40 }), CounterPassMalformed},
		{"ipv4 IHL 15 beyond tot_len", patched(tcp4(1, thSYN), l3, func(b []byte) { b[0] = 0x4f }), CounterPassMalformed},
		{"version 6 under ethertype ipv4", patched(tcp4(1, thSYN), l3, func(b []byte) { b[0] = 0x65 }), CounterPassMalformed},
		{"version 0 under ethertype ipv4", patched(tcp4(1, thSYN), l3, func(b []byte) { b[0] = 0x05 }), CounterPassMalformed},
		{"version 4 under ethertype ipv6", patched(tcp6(1, thSYN), l3, func(b []byte) { b[0] = 0x40 | b[0]&0x0f }), CounterPassMalformed},
		{"ipv6 payload_len larger than the frame", patched(tcp6(1, thSYN), l3, func(b []byte) {
			binary.BigEndian.PutUint16(b[4:], 21)
		}), CounterPassMalformed},
		{"ipv6 payload_len 65535", patched(udp6(1), l3, func(b []byte) {
			binary.BigEndian.PutUint16(b[4:], 0xffff)
		}), CounterPassMalformed},
		{"802.1Q ipv4 tot_len larger than the frame", patched(tcp4(1, thSYN).with(tagged8021Q), l3+4, func(b []byte) {
			binary.BigEndian.PutUint16(b[2:], 100)
		}), CounterPassMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			step{frame: tc.frame, verdict: verdictPass, counters: count(tc.why)}.check(t, d, stdServices, stdBackends)
			if f := allFlows(t, d); len(f) != 0 {
				t.Errorf("flows after a passed frame: %v", f)
			}
		})
	}
}

func tagged8021Q(p *pkt) { p.tags = []vlanTag{{tpid8021Q, 42}} }

// TestTruncated cuts frames at every length. The kernel refuses frames
// shorter than an Ethernet header before XDP runs (EINVAL). Every longer
// cut is a frame whose IP header claims more than it holds, so it passes
// untouched as malformed. A second pass rewrites the IP length to what is
// left, so the IP header is consistent and the cut is caught by the next
// header's own bounds check; such a frame is forwarded from exactly the
// end of its TCP/UDP header on.
func TestTruncated(t *testing.T) {
	d := newStdDatapath(t)
	frames := []struct {
		name string
		p    pkt
		svc  uint32
	}{
		{"tcp4", tcp4(42000, thSYN).with(func(p *pkt) { p.payload = []byte("data") }), svcTCP4},
		{"udp4", udp4(42001), svcUDP4},
		{"802.1Q tcp4", tcp4(42002, thSYN).with(tagged8021Q).with(func(p *pkt) { p.payload = []byte("data") }), svcTCP4},
		{"802.1ad udp4", udp4(42003).with(func(p *pkt) { p.tags = []vlanTag{{tpidQinQ, 5}} }), svcUDP4},
		{"tcp4 with options", tcp4(42004, thSYN).with(func(p *pkt) { p.ipOpts = []byte{1, 1, 1, 1, 0x94, 4, 0, 0}; p.payload = []byte("x") }), svcTCP4},
		{"tcp6", tcp6(42005, thSYN).with(func(p *pkt) { p.payload = []byte("data") }), svcTCP6},
		{"udp6", udp6(42006), svcUDP6},
		{"802.1Q udp6", udp6(42007).with(tagged8021Q), svcUDP6},
	}
	for _, fr := range frames {
		t.Run(fr.name, func(t *testing.T) {
			full, lo := fr.p.buildLayout()
			ipLenOff := 2 // IPv4 tot_len
			if fr.p.dstIP.Is6() {
				ipLenOff = 4 // IPv6 payload_len
			}
			for n := 0; n < len(full); n++ {
				cut := append([]byte{}, full[:n]...)
				if n < 14 {
					_, _, err := d.objs.XlbXdp.Test(cut)
					if !errors.Is(err, unix.EINVAL) {
						t.Errorf("cut at %d: err %v, want EINVAL", n, err)
					}
					continue
				}
				step{frame: cut, verdict: verdictPass, counters: map[Counter]uint64{CounterPassMalformed: 1}}.
					check(t, d, stdServices, stdBackends)

				if n < lo.eth+ipLenOff+2 {
					continue // the length field itself is cut
				}
				fixed := append([]byte{}, cut...)
				l := n - lo.eth
				if fr.p.dstIP.Is6() {
					l -= 40
				}
				binary.BigEndian.PutUint16(fixed[lo.eth+ipLenOff:], uint16(l))
				clearFlows(t, d)
				verdict, out := run(t, d, fixed)
				want, wantVerdict := fixed, uint32(verdictPass)
				if n >= lo.l4 {
					wantVerdict = verdictTX
					want = append([]byte{}, fixed...)
					b := backendMAC(fr.svc)
					copy(want[0:6], b[:])
					copy(want[6:12], macLB[:])
				}
				if verdict != wantVerdict {
					t.Errorf("cut at %d with IP length %d: verdict %d, want %d", n, l, verdict, wantVerdict)
				}
				if diff := cmp.Diff(want, out); diff != "" {
					t.Errorf("cut at %d with IP length %d: frame out (-want +got):\n%s", n, l, diff)
				}
			}
			if f := allFlows(t, d); len(f) > 1 {
				t.Errorf("flows: %v", f)
			}
		})
	}
}

// TestL4HeaderBeyondIPLength: a TCP/UDP header must lie inside the IP
// packet, not in the Ethernet padding after it. A 60-byte minimum frame
// carrying an IPv4 header whose tot_len ends before the TCP header has
// only padding where the ports would be; taking ports from there
// schedules garbage (here: ports 0, which the port-0 service accepts)
// and records a flow for a packet the kernel would drop as truncated.
func TestL4HeaderBeyondIPLength(t *testing.T) {
	d := newStdDatapath(t)
	// short sets the IP length to ipLen; what follows the IP packet is
	// padding, zeroed when zero is set, else left as the header it was.
	short := func(p pkt, ipLen int, zero bool) []byte {
		b, lo := p.buildLayout()
		end := lo.eth + ipLen
		if p.dstIP.Is4() {
			binary.BigEndian.PutUint16(b[lo.eth+2:], uint16(ipLen))
		} else {
			binary.BigEndian.PutUint16(b[lo.eth+4:], uint16(ipLen))
			end = lo.ip + ipLen
		}
		if zero {
			clear(b[end:])
		}
		return b
	}
	allPorts := tcp4(0, 0).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 0; p.pad = 6 })
	tests := []struct {
		name  string
		frame []byte
	}{
		{"ipv4 tot_len 20, zero padding where the tcp header would be", short(allPorts, 20, true)},
		{"ipv4 tot_len 30, half the tcp header in zero padding", short(allPorts, 30, true)},
		{"ipv4 tot_len 20, a whole tcp header after the packet", short(tcp4(55000, thSYN), 20, false)},
		{"ipv4 tot_len 24, udp header half after the packet", short(udp4(55001), 24, false)},
		{"ipv6 payload_len 0, tcp header after the packet", short(tcp6(55002, thSYN), 0, false)},
		{"ipv6 payload_len 4, udp header half after the packet", short(udp6(55003), 4, false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			step{frame: tc.frame, verdict: verdictPass, counters: map[Counter]uint64{CounterPassMalformed: 1}}.
				check(t, d, stdServices, stdBackends)
			if f := allFlows(t, d); len(f) != 0 {
				t.Errorf("flows after a malformed frame: %v", f)
			}
			clearFlows(t, d)
		})
	}
}
