package datapath

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
)

// rawFlow is the entry of f as the program stores it, clock stamps
// included, from whichever tier holds it.
func rawFlow(tb testing.TB, d *Datapath, f Flow) (lbFlow, bool) {
	tb.Helper()
	for _, probation := range []bool{false, true} {
		t, key := d.tableOf(f, probation)
		var v lbFlow
		if err := t.m.Lookup(key, &v); err == nil {
			return v, true
		}
	}
	return lbFlow{}, false
}

func relayed() map[Counter]uint64 { return map[Counter]uint64{CounterFlowICMPRelayed: 1} }

// TestICMPError: an ICMP error about the real server's reply on a flow
// goes, unchanged but for its MACs, to the real server of that flow's
// entry, and leaves the entry exactly as it was, clock stamps included;
// an error the program cannot tie to a live entry of its own VIP passes
// to the kernel with the reason counted.
func TestICMPError(t *testing.T) {
	count := func(c Counter) map[Counter]uint64 { return map[Counter]uint64{c: 1} }
	ptb := func(p pkt) pkt { return p.icmpError(icmp6PacketTooBig, 0, 1280) }
	fragNeeded := func(p pkt) pkt { return p.icmpError(icmpDestUnreach, icmpFragNeeded, 1400) }
	tests := []struct {
		name string
		flow pkt      // the client's flow, whose entry is set up first
		spec flowSpec // its entry; backend 0: none
		icmp pkt      // the frame sent
		// verdict, backend and svc as in step; counters: the frame's.
		verdict      uint32
		backend, svc uint32
		counters     map[Counter]uint64
	}{{
		name: "ipv4 fragmentation needed, known flow", flow: tcp4(41000, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst, idle: 3, age: 40},
		icmp: fragNeeded(tcp4(41000, thACK)), verdict: verdictTX, backend: 1, svc: svcTCP4, counters: relayed(),
	}, {
		name: "ipv6 packet too big, known flow", flow: tcp6(41001, thACK),
		spec: flowSpec{backend: 3, service: svcTCP6, state: FlowEst, idle: 3, age: 40},
		icmp: ptb(tcp6(41001, thACK)), verdict: verdictTX, backend: 3, svc: svcTCP6, counters: relayed(),
	}, {
		name: "ipv4 fragmentation needed, flow in probation", flow: tcp4(41002, thSYN),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowSYN, idle: 1, probation: true},
		icmp: fragNeeded(tcp4(41002, thSYN)), verdict: verdictTX, backend: 1, svc: svcTCP4, counters: relayed(),
	}, {
		name: "ipv6 packet too big, flow in probation", flow: udp6(41003),
		spec: flowSpec{backend: 4, service: svcUDP6, state: FlowUDP, probation: true},
		icmp: ptb(udp6(41003)), verdict: verdictTX, backend: 4, svc: svcUDP6, counters: relayed(),
	}, {
		name: "ipv4 port unreachable, udp flow", flow: udp4(41004),
		spec: flowSpec{backend: 2, service: svcUDP4, state: FlowUDP},
		icmp: udp4(41004).icmpError(icmpDestUnreach, icmpPortUnreach, 0), verdict: verdictTX, backend: 2, svc: svcUDP4, counters: relayed(),
	}, {
		name: "ipv4 time exceeded", flow: tcp4(41005, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: tcp4(41005, thACK).icmpError(icmpTimeExceeded, 0, 0), verdict: verdictTX, backend: 1, svc: svcTCP4, counters: relayed(),
	}, {
		name: "ipv4 source quench", flow: tcp4(41006, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: tcp4(41006, thACK).icmpError(icmpSourceQuench, 0, 0), verdict: verdictTX, backend: 1, svc: svcTCP4, counters: relayed(),
	}, {
		name: "ipv4 host unreachable, port-0 service's flow", flow: tcp4(41007, thACK).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 9000 }),
		spec:    flowSpec{backend: 5, service: svcAllPorts, state: FlowEst},
		icmp:    tcp4(41007, thACK).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 9000 }).icmpError(icmpDestUnreach, 1, 0),
		verdict: verdictTX, backend: 5, svc: svcAllPorts, counters: relayed(),
	}, {
		name: "ipv6 parameter problem", flow: tcp6(41008, thACK),
		spec: flowSpec{backend: 3, service: svcTCP6, state: FlowFIN},
		icmp: tcp6(41008, thACK).icmpError(icmp6ParamProb, 0, 48), verdict: verdictTX, backend: 3, svc: svcTCP6, counters: relayed(),
	}, {
		name: "802.1Q tagged error keeps its tag", flow: tcp4(41009, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41009, thACK).with(tagged8021Q)), verdict: verdictTX, backend: 1, svc: svcTCP4, counters: relayed(),
	}, {
		name: "unknown flow", flow: tcp4(41010, thACK),
		icmp: fragNeeded(tcp4(41010, thACK)), verdict: verdictPass, counters: count(CounterPassICMPNoFlow),
	}, {
		name: "ipv6 unknown flow", flow: tcp6(41011, thACK),
		icmp: ptb(tcp6(41011, thACK)), verdict: verdictPass, counters: count(CounterPassICMPNoFlow),
	}, {
		name: "expired flow", flow: tcp4(41012, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst, idle: 1 << 30},
		icmp: fragNeeded(tcp4(41012, thACK)), verdict: verdictPass, counters: count(CounterPassICMPNoFlow),
	}, {
		name: "flow whose backend is gone", flow: tcp4(41013, thACK),
		spec: flowSpec{backend: 99, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41013, thACK)), verdict: verdictPass, counters: count(CounterPassICMPNoFlow),
	}, {
		name: "flow on another service's backend", flow: tcp4(41014, thACK),
		spec: flowSpec{backend: 2, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41014, thACK)), verdict: verdictPass, counters: count(CounterPassICMPNoFlow),
	}, {
		name: "quote from another vip than the error's destination", flow: tcp4(41015, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41015, thACK)).with(func(p *pkt) { p.dstIP = vip4b }), verdict: verdictPass, counters: count(CounterPassICMPNoFlow),
	}, {
		name: "error to no vip", flow: tcp4(41016, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41016, thACK)).with(func(p *pkt) { p.dstIP = other4 }), verdict: verdictPass, counters: count(CounterPassNotVIP),
	}, {
		name: "echo request to the vip", flow: tcp4(41017, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: tcp4(41017, 0).with(func(p *pkt) { p.proto = ipProtoICMP }), verdict: verdictPass, counters: count(CounterPassNotL4),
	}, {
		name: "echo reply quoting a flow is no error", flow: tcp4(41018, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: tcp4(41018, thACK).icmpError(icmpEchoReply, 0, 0), verdict: verdictPass, counters: count(CounterPassNotL4),
	}, {
		name: "ipv4 parameter problem is not relayed (as IPVS)", flow: tcp4(41019, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: tcp4(41019, thACK).icmpError(icmpParamProb, 0, 0), verdict: verdictPass, counters: count(CounterPassNotL4),
	}, {
		name: "icmpv6 echo reply quoting a flow", flow: tcp6(41020, thACK),
		spec: flowSpec{backend: 3, service: svcTCP6, state: FlowEst},
		icmp: tcp6(41020, thACK).icmpError(icmp6EchoReply, 0, 0), verdict: verdictPass, counters: count(CounterPassNotL4),
	}, {
		name: "error to another host's mac", flow: tcp4(41021, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41021, thACK)).with(func(p *pkt) { p.dst = macRouter }), verdict: verdictPass, counters: count(CounterPassOtherHost),
	}, {
		name: "quote of an icmp packet", flow: tcp4(41022, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41022, 0).with(func(p *pkt) { p.proto = ipProtoICMP })), verdict: verdictPass, counters: count(CounterPassNotL4),
	}, {
		name: "quote of a later fragment", flow: udp4(41023),
		spec: flowSpec{backend: 2, service: svcUDP4, state: FlowUDP},
		icmp: udp4(41023).icmpError(icmpTimeExceeded, 1, 0).with(func(p *pkt) {
			q := udp4(41023).reply().with(func(q *pkt) { q.frag, q.raw = 185, true })
			p.payload = q.quote(8)
		}), verdict: verdictPass, counters: count(CounterPassNotL4),
	}, {
		name: "quote with 3 bytes of its ports", flow: tcp4(41024, thACK),
		spec:    flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp:    fragNeeded(tcp4(41024, thACK)).with(func(p *pkt) { p.payload = tcp4(41024, thACK).reply().quote(3) }),
		verdict: verdictPass, counters: count(CounterPassMalformed),
	}, {
		name: "quote cut inside its ip header", flow: tcp4(41025, thACK),
		spec:    flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp:    fragNeeded(tcp4(41025, thACK)).with(func(p *pkt) { p.payload = p.payload[:12] }),
		verdict: verdictPass, counters: count(CounterPassMalformed),
	}, {
		name: "ipv6 quote with 3 bytes of its ports", flow: tcp6(41026, thACK),
		spec:    flowSpec{backend: 3, service: svcTCP6, state: FlowEst},
		icmp:    ptb(tcp6(41026, thACK)).with(func(p *pkt) { p.payload = tcp6(41026, thACK).reply().quote(3) }),
		verdict: verdictPass, counters: count(CounterPassMalformed),
	}, {
		name: "quote with 4 bytes, the ports, is enough", flow: tcp6(41027, thACK),
		spec:    flowSpec{backend: 3, service: svcTCP6, state: FlowEst},
		icmp:    ptb(tcp6(41027, thACK)).with(func(p *pkt) { p.payload = tcp6(41027, thACK).reply().quote(4) }),
		verdict: verdictTX, backend: 3, svc: svcTCP6, counters: relayed(),
	}, {
		name: "quote with ip options", flow: tcp4(41028, thACK),
		spec: flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp: fragNeeded(tcp4(41028, thACK)).with(func(p *pkt) {
			p.payload = tcp4(41028, thACK).reply().with(func(q *pkt) { q.ipOpts = []byte{1, 1, 1, 0} }).quote(8)
		}), verdict: verdictTX, backend: 1, svc: svcTCP4, counters: relayed(),
	}, {
		name: "icmp header cut short", flow: tcp4(41029, thACK),
		spec:    flowSpec{backend: 1, service: svcTCP4, state: FlowEst},
		icmp:    fragNeeded(tcp4(41029, thACK)).with(func(p *pkt) { p.raw, p.payload = true, []byte{3, 4, 0, 0} }),
		verdict: verdictPass, counters: count(CounterPassMalformed),
	}}
	d := newStdDatapath(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearFlows(t, d)
			flow := tc.flow.flow()
			if tc.spec.backend != 0 {
				putFlowAged(t, d, flow, tc.spec)
			}
			before, _ := rawFlow(t, d, flow)
			step{p: tc.icmp, verdict: tc.verdict, backend: tc.backend, svc: tc.svc, counters: tc.counters}.check(t, d, stdServices, stdBackends)
			after, _ := rawFlow(t, d, flow)
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("the flow's entry changed (-before +after):\n%s", diff)
			}
			if tc.spec.backend != 0 && tc.spec.probation && inTier(d, flow, false) {
				t.Errorf("the error moved its flow out of probation")
			}
		})
	}
}

// inTier reports whether one tier of the flow table holds f.
func inTier(d *Datapath, f Flow, probation bool) bool {
	t, key := d.tableOf(f, probation)
	var v lbFlow
	return t.m.Lookup(key, &v) == nil
}

// TestICMPErrorFollowsFlow: an error goes where the packets of its flow
// go as the flow moves: not to a removed real server, and to the one its
// next packet was scheduled to.
func TestICMPErrorFollowsFlow(t *testing.T) {
	d := newStdDatapath(t)
	p := udp4(41100)
	ptb := p.icmpError(icmpDestUnreach, icmpFragNeeded, 1280)
	bes := []uint32{2, 7}
	step{p: p, verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()}.check(t, d, stdServices, bes)
	step{p: ptb, verdict: verdictTX, backend: 2, svc: svcUDP4, counters: relayed()}.check(t, d, stdServices, bes)
	apply(t, d, Txn{
		Backends:       backendsOf(svcUDP4, 7),
		Services:       []ServiceTable{{Key: ServiceKey{Addr: vip4, Port: 53, Proto: ipProtoUDP}, Service: Service{ID: svcUDP4}, Table: patterned(13, 7)}},
		DeleteBackends: []uint32{2},
	})
	step{p: ptb, verdict: verdictPass, flowSvc: svcUDP4, counters: map[Counter]uint64{CounterPassICMPNoFlow: 1}}.check(t, d, stdServices, bes)
	step{p: p, verdict: verdictTX, backend: 7, svc: svcUDP4, state: FlowUDP,
		counters: map[Counter]uint64{CounterFlowRehash: 1, CounterFlowNew: 1}}.check(t, d, stdServices, bes)
	step{p: ptb, verdict: verdictTX, backend: 7, svc: svcUDP4, counters: relayed()}.check(t, d, stdServices, bes)
}

// fragSteps are the steps of a datagram's fragments in order: the first
// makes a new flow unless known, the others follow it.
func fragSteps(frags []pkt, backend, svc uint32, st FlowState, known bool) []step {
	var out []step
	for i, f := range frags {
		s := step{p: f, verdict: verdictTX, backend: backend, svc: svc, state: st}
		if i == 0 && !known {
			s.counters = newFlow()
		}
		out = append(out, s)
	}
	return out
}

// TestFragments: every fragment of a VIP datagram goes to the real server
// its first fragment went to, byte for byte but for the MACs; a later
// fragment that overtook its first passes to the kernel, counted.
func TestFragments(t *testing.T) {
	big := func(p pkt) pkt { return p.with(func(q *pkt) { q.payload = make([]byte, 200) }) }
	u4 := big(udp4(42000)).fragments(64, 0x1001)
	u6 := big(udp6(42001)).fragments(64, 0x10000001)
	t4 := big(tcp4(42002, thSYN)).fragments(80, 0x1002)
	t6 := big(tcp6(42003, thACK|thPSH)).fragments(80, 0x10000003)
	tag := big(udp4(42004).with(tagged8021Q)).fragments(64, 0x1004)
	// Two datagrams of two flows from one client, interleaved.
	a := big(udp4(42005)).fragments(64, 0x1005)
	b := big(udp4(42006)).fragments(64, 0x1006)
	// The same id from the same client in another protocol is another
	// datagram.
	sameID := big(tcp4(42007, thACK)).fragments(80, 0x1005)
	late := big(udp4(42008)).fragments(64, 0x1008)
	noFirst := map[Counter]uint64{CounterPassFragNoFirst: 1}
	tests := []struct {
		name  string
		steps []step
	}{
		{"ipv4 udp", fragSteps(u4, 2, svcUDP4, FlowUDP, false)},
		{"ipv6 udp", fragSteps(u6, 4, svcUDP6, FlowUDP, false)},
		// Later fragments repeat their first one's flags: a SYN's keep
		// the flow in SYN, not moved to ESTABLISHED by flagless bytes.
		{"ipv4 tcp syn", fragSteps(t4, 1, svcTCP4, FlowSYN, false)},
		{"ipv6 tcp", fragSteps(t6, 3, svcTCP6, FlowEst, false)},
		{"802.1Q ipv4 udp", fragSteps(tag, 2, svcUDP4, FlowUDP, false)},
		{"interleaved datagrams", []step{
			{p: a[0], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
			{p: b[0], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
			{p: b[2], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP},
			{p: a[1], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP},
			{p: sameID[0], verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst, counters: newFlow()},
			{p: a[2], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP},
			{p: sameID[1], verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst},
			{p: b[1], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP},
		}},
		{"later fragment before its first", []step{
			{p: late[2], verdict: verdictPass, counters: noFirst},
			{p: late[0], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
			{p: late[1], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP},
			// The last fragment once more, now that the first was seen.
			{p: late[2], verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP},
		}},
	}
	d := newStdDatapath(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, s := range tc.steps {
				t.Logf("step %d", i)
				s.check(t, d, stdServices, stdBackends)
			}
		})
	}
}

// TestFragmentOfPassedDatagram: a first fragment the program passes (no
// backend for the port) takes its later fragments with it to the kernel,
// which reassembles the datagram.
func TestFragmentOfPassedDatagram(t *testing.T) {
	d := newStdDatapath(t)
	frags := udp4(42100).with(func(p *pkt) { p.dport = 54; p.payload = make([]byte, 100) }).fragments(64, 0x2001)
	notVIP := map[Counter]uint64{CounterPassNotVIP: 1}
	for _, f := range frags {
		step{p: f, verdict: verdictPass, counters: notVIP}.check(t, d, stdServices, stdBackends)
	}
}

// TestFragmentedAndWholeDatagramsMeet: the fragmented datagrams of a flow
// land on the real server its whole ones land on, whichever comes first:
// the Maglev hash sees the same 5-tuple, where hashing fragmented traffic
// on addresses only would part them.
func TestFragmentedAndWholeDatagramsMeet(t *testing.T) {
	d := newDatapath(t, Options{})
	ids := []uint32{21, 22, 23, 24}
	apply(t, d, Txn{
		Backends: backendsOf(svcUDP4, ids...),
		Services: []ServiceTable{{Key: ServiceKey{Addr: vip4, Port: 53, Proto: ipProtoUDP}, Service: Service{ID: svcUDP4}, Table: patterned(13, ids...)}},
	})
	seen := map[uint32]bool{}
	for port := uint16(43000); port < 43016; port++ {
		whole := udp4(port).with(func(p *pkt) { p.payload = make([]byte, 100) })
		frags := whole.fragments(64, uint32(port))
		// Fragmented first: its first fragment schedules the flow.
		clearFlows(t, d)
		v, out := run(t, d, frags[0].build())
		if v != verdictTX {
			t.Fatalf("port %d: first fragment verdict %d", port, v)
		}
		be := macAddr(out[0:6])
		if v, out := run(t, d, frags[1].build()); v != verdictTX || macAddr(out[0:6]) != be {
			t.Errorf("port %d: later fragment verdict %d to %x, want TX to %x", port, v, out[0:6], be)
		}
		// Whole first, on an empty table: the same choice.
		clearFlows(t, d)
		if v, out := run(t, d, whole.build()); v != verdictTX || macAddr(out[0:6]) != be {
			t.Errorf("port %d: whole datagram verdict %d to %x, fragmented one went to %x", port, v, out[0:6], be)
		}
		// And a fragmented datagram after it follows its entry.
		if v, out := run(t, d, whole.fragments(64, uint32(port)+1)[0].build()); v != verdictTX || macAddr(out[0:6]) != be {
			t.Errorf("port %d: fragment after the whole datagram verdict %d to %x, want %x", port, v, out[0:6], be)
		}
		seen[binary.BigEndian.Uint32(be[2:])] = true
	}
	if len(seen) < 2 {
		t.Errorf("16 flows all went to %v: the test cannot tell a 5-tuple hash from an address hash", seen)
	}
}

// TestFragsShared: one fragment table for every CPU, as the first and the
// later fragments of a datagram may be steered to different CPUs (a NIC
// hashes packets without ports on their addresses only), and sized by
// Options.
func TestFragsShared(t *testing.T) {
	d := newDatapath(t, Options{FragmentTableSize: 1024})
	info, err := d.objs.Frags.Info()
	if err != nil {
		t.Fatal(err)
	}
	type shape struct {
		Type       ebpf.MapType
		Flags      uint32
		MaxEntries uint32
	}
	// BPF_F_NO_COMMON_LRU would split the LRU list per CPU, so a CPU's
	// share could evict a record the others still need.
	want := shape{Type: ebpf.LRUHash, Flags: 0, MaxEntries: 1024}
	if diff := cmp.Diff(want, shape{info.Type, info.Flags, info.MaxEntries}); diff != "" {
		t.Errorf("frags map (-want +got):\n%s", diff)
	}
	d2 := newDatapath(t, Options{})
	if got := d2.objs.Frags.MaxEntries(); got != DefaultFragmentTableSize {
		t.Errorf("default frags size %d, want %d", got, DefaultFragmentTableSize)
	}
}
