package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tierOf says where f is: "flows", "probation" or "" for nowhere.
func tierOf(t *testing.T, d *Datapath, f Flow) string {
	t.Helper()
	e, ok, err := d.LookupFlow(f)
	switch {
	case err != nil:
		t.Fatal(err)
	case !ok:
		return ""
	case e.Probation:
		return "probation"
	}
	return "flows"
}

// promoteUnits is the promotion age the program applies, in clock units.
func promoteUnits(t *testing.T, d *Datapath) uint32 {
	t.Helper()
	var s lbXlbSettings
	if err := d.objs.Settings.Get(&s); err != nil {
		t.Fatal(err)
	}
	return s.Promote
}

// TestProbation: a new flow starts in probation and moves to the flow
// table proper on a packet that comes once it has lasted the promotion
// age, established or UDP; a flow that has not lasted, or has sent only
// SYNs, stays. Ages are set by writing entries whose first packet lies in
// the past of the program's clock, a unit away from the boundary.
func TestProbation(t *testing.T) {
	d := newStdDatapath(t)
	p := promoteUnits(t, d)
	svcs, bes := stdServices, stdBackends

	syn := tcp4(57000, thSYN)
	step{p: syn, verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
	if got := tierOf(t, d, syn.flow()); got != "probation" {
		t.Fatalf("a new flow is in %q, want probation", got)
	}
	tests := []struct {
		name  string
		p     pkt
		state FlowState
		idle  uint32 // units since the last packet
		age   uint32 // units from the first packet to the last
		want  string
	}{
		{"established, lasted", tcp4(57001, thACK), FlowEst, 1, p, "flows"},
		{"established, not lasted", tcp4(57002, thACK), FlowEst, 1, p - 3, "probation"},
		{"UDP, lasted", udp4(57003), FlowUDP, 2, p, "flows"},
		{"SYNs only, lasted", tcp4(57004, thSYN), FlowSYN, 1, p, "probation"},
		{"FIN, lasted", tcp4(57005, thACK), FlowFIN, 1, p, "probation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, be := uint32(svcTCP4), uint32(1)
			if tc.p.proto == ipProtoUDP {
				svc, be = svcUDP4, 2
			}
			putFlowAged(t, d, tc.p.flow(), flowSpec{backend: be, service: svc, state: tc.state, idle: tc.idle, age: tc.age, probation: true})
			s := step{p: tc.p, verdict: verdictTX, backend: be, svc: svc, state: modelNextState(tc.p.proto, tc.p.flags, tc.state)}
			if tc.want == "flows" {
				s.counters = map[Counter]uint64{CounterFlowPromoted: 1}
			}
			s.check(t, d, svcs, bes)
			if got := tierOf(t, d, tc.p.flow()); got != tc.want {
				t.Errorf("after the packet the flow is in %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFlowTableFull is the failure mode at capacity: with the flow table
// proper full, a flow that lasted stays in probation (promote_full, once
// per clock unit) and is forwarded all the same; once the sweep removes
// an expired entry, it moves.
func TestFlowTableFull(t *testing.T) {
	const size = 16
	d := newDatapath(t, Options{FlowTableSize: size})
	apply(t, d, stdSetup())
	p := promoteUnits(t, d)
	hz, err := tickRate()
	if err != nil {
		t.Fatal(err)
	}
	// Fill the table: established flows, one of them idle past its
	// timeout (the table has no room whether entries are live or not).
	for i := range size {
		f := tcp4(uint16(58000+i), thACK).flow()
		fs := flowSpec{backend: 1, service: svcTCP4, state: FlowEst}
		if i == 0 {
			fs.idle = units(DefaultTimeouts.TCP, hz) + 2
		}
		putFlowAged(t, d, f, fs)
	}
	lasting := tcp4(58100, thACK)
	putFlowAged(t, d, lasting.flow(), flowSpec{backend: 1, service: svcTCP4, state: FlowEst, idle: 1, age: p, probation: true})
	step{p: lasting, verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst,
		counters: map[Counter]uint64{CounterPromoteFull: 1}}.check(t, d, stdServices, stdBackends)
	if got := tierOf(t, d, lasting.flow()); got != "probation" {
		t.Fatalf("with the flow table full, the flow is in %q, want probation", got)
	}
	// Within the same clock unit, no second try.
	step{p: lasting, verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst}.check(t, d, stdServices, stdBackends)

	res, err := d.Sweep(0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Expired != 1 {
		t.Fatalf("sweep deleted %d entries, want the 1 expired", res.Expired)
	}
	putFlowAged(t, d, lasting.flow(), flowSpec{backend: 1, service: svcTCP4, state: FlowEst, idle: 1, age: p, probation: true})
	step{p: lasting, verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst,
		counters: map[Counter]uint64{CounterFlowPromoted: 1}}.check(t, d, stdServices, stdBackends)
	if got := tierOf(t, d, lasting.flow()); got != "flows" {
		t.Errorf("after the sweep made room, the flow is in %q, want flows", got)
	}
}

// TestFloodKeepsFlowTable: flows in the flow table proper stay, and stay
// on their backends across a table change, whatever a flood of new tuples
// sends: single SYNs, SYN-then-ACK pairs, data packets from spoofed
// sources, hundreds of times probation's size. The flood churns
// probation only, its own entries and any other new flow's.
func TestFloodKeepsFlowTable(t *testing.T) {
	const size = 64
	d := newDatapath(t, Options{FlowTableSize: size, ProbationSize: size})
	table := patterned(251, 1, 2, 3)
	apply(t, d, Txn{Backends: backendsTxn(1, 2, 3), Services: []ServiceTable{{Key: web4, Service: Service{ID: 1}, Table: table}}})
	svcs, bes := []uint32{1}, []uint32{1, 2, 3}

	var established []pkt
	for i := range 10 {
		p := tcp4(uint16(59000+i), thSYN)
		step{p: p, verdict: verdictTX, backend: predict(table, p.flow(), false), svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
		p.flags = thACK
		established = append(established, p)
	}
	// They have lasted.
	if err := promoteAll(d); err != nil {
		t.Fatal(err)
	}

	// Every slot moves to the next backend, then the flood.
	next := make([]uint32, len(table))
	for i, id := range table {
		next[i] = id%3 + 1
	}
	apply(t, d, webTxn(next))
	c0 := counters(t, d)
	const tuples = 300 * size
	for i := range tuples {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		base := tcp4(uint16(1024+i%50000), thSYN).with(func(p *pkt) { p.srcIP = src })
		frames := [][]byte{base.build()}
		switch i % 3 {
		case 1: // SYN, then ACK
			frames = append(frames, base.with(func(p *pkt) { p.flags = thACK }).build())
		case 2: // data alone
			frames = [][]byte{base.with(func(p *pkt) { p.flags = thACK | thPSH; p.payload = []byte("x") }).build()}
		}
		for _, f := range frames {
			if v, _ := run(t, d, f); v != verdictTX {
				t.Fatalf("flood frame %d: verdict %d", i, v)
			}
		}
	}
	delta := counterDelta(c0, counters(t, d))
	if delta[CounterFlowNew] < tuples {
		t.Errorf("the flood made %d new flows, want at least %d", delta[CounterFlowNew], tuples)
	}
	// No promotion: nothing the flood sent lasted.
	if delta[CounterFlowPromoted] != 0 || delta[CounterPromoteFull] != 0 {
		t.Errorf("the flood's flows were promoted: %v", delta)
	}
	for _, p := range established {
		b := predict(table, p.flow(), false)
		step{p: p, verdict: verdictTX, backend: b, svc: 1, state: FlowEst}.check(t, d, svcs, bes)
	}
}

// TestSweep: a pass deletes the entries past their timeouts, in the flow
// table and in probation, keeps the others and counts them by backend as
// IPVS counts connections: ESTABLISHED active, anything else inactive.
func TestSweep(t *testing.T) {
	d := newStdDatapath(t)
	hz, err := tickRate()
	if err != nil {
		t.Fatal(err)
	}
	past := func(s FlowState) uint32 { return units(DefaultTimeouts.For(s), hz) + 2 }
	entries := []struct {
		p    pkt
		fs   flowSpec
		gone bool
	}{
		{tcp4(60000, thACK), flowSpec{backend: 1, service: 1, state: FlowEst}, false},
		{tcp4(60001, thACK), flowSpec{backend: 1, service: 1, state: FlowEst, probation: true}, false},
		{tcp4(60002, thACK), flowSpec{backend: 1, service: 1, state: FlowSYN}, false},
		{tcp4(60003, thACK), flowSpec{backend: 1, service: 1, state: FlowSYN, idle: past(FlowSYN)}, true},
		// Idle as long as a SYN may be, but established.
		{tcp4(60004, thACK), flowSpec{backend: 1, service: 1, state: FlowEst, idle: past(FlowSYN)}, false},
		{tcp6(60005, thACK), flowSpec{backend: 3, service: 3, state: FlowClose, idle: past(FlowClose), probation: true}, true},
		{udp6(60006), flowSpec{backend: 4, service: 4, state: FlowUDP, probation: true}, false},
		{udp4(60007), flowSpec{backend: 2, service: 2, state: FlowUDP, idle: past(FlowUDP)}, true},
	}
	for _, e := range entries {
		putFlowAged(t, d, e.p.flow(), e.fs)
	}
	res, err := d.Sweep(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]Conns{1: {Active: 3, Inactive: 1}, 4: {Inactive: 1}}
	if diff := cmp.Diff(want, res.Backends); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if res.Live != 5 || res.Probation != 2 || res.Expired != 3 {
		t.Errorf("live %d, probation %d, expired %d; want 5, 2, 3", res.Live, res.Probation, res.Expired)
	}
	for i, e := range entries {
		_, ok, err := d.LookupFlow(e.p.flow())
		if err != nil {
			t.Fatal(err)
		}
		if ok == e.gone {
			t.Errorf("entry %d (%v): in the table %v after the sweep", i, e.p.flow(), ok)
		}
	}
}
