package datapath

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
)

// predict is the backend Go expects the program to pick from table.
func predict(table []uint32, f Flow, hashSource bool) uint32 {
	return table[MaglevIndex(FlowHash(f, hashSource), uint32(len(table)))]
}

var web4 = ServiceKey{Addr: vip4, Port: 80, Proto: ipProtoTCP}

// webTxn sets web4 (service id 1) to table.
func webTxn(table []uint32) Txn {
	return Txn{Services: []ServiceTable{{Key: web4, Service: Service{ID: 1}, Table: table}}}
}

func TestTCPStates(t *testing.T) {
	d := newStdDatapath(t)
	tests := []struct {
		name   string
		flags  []uint8
		states []FlowState
	}{
		{"handshake, data, close by FIN then RST",
			[]uint8{thSYN, thSYN, thACK, thPSH | thACK, thSYN | thACK, thFIN | thACK, thACK, thRST, thACK},
			[]FlowState{FlowSYN, FlowSYN, FlowEst, FlowEst, FlowEst, FlowFIN, FlowFIN, FlowClose, FlowClose}},
		{"RST after established",
			[]uint8{thSYN, thACK, thRST | thACK, thACK},
			[]FlowState{FlowSYN, FlowEst, FlowClose, FlowClose}},
		{"RST wins over FIN and SYN in one segment",
			[]uint8{thSYN, thSYN | thFIN | thRST},
			[]FlowState{FlowSYN, FlowClose}},
		{"FIN wins over SYN",
			[]uint8{thSYN | thFIN},
			[]FlowState{FlowFIN}},
		{"SYN|ACK of an unknown flow",
			[]uint8{thSYN | thACK, thACK},
			[]FlowState{FlowSYN, FlowEst}},
		{"FIN of an unknown flow",
			[]uint8{thFIN | thACK, thACK},
			[]FlowState{FlowFIN, FlowFIN}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for j, fl := range tc.flags {
				s := step{p: tcp4(uint16(43000+i), fl), verdict: verdictTX, backend: 1, svc: svcTCP4, state: tc.states[j]}
				if j == 0 {
					s.counters = newFlow()
				}
				t.Logf("step %d flags %#02x", j, fl)
				s.check(t, d, stdServices, stdBackends)
			}
			e, ok, err := d.LookupFlow(tcp4(uint16(43000+i), 0).flow())
			if err != nil || !ok {
				t.Fatalf("lookup: %v %v", ok, err)
			}
			// The program stamps flows with a coarse clock of 256-jiffy
			// units (~1 s): one may have ticked since the last packet,
			// two may not.
			unit := time.Duration(float64(1<<atimeShift) / d.hz * float64(time.Second))
			if e.Idle > unit {
				t.Errorf("idle %v right after a packet, more than one clock unit (%v)", e.Idle, unit)
			}
		})
	}
}

// TestReuse: a SYN without ACK on a finished flow is a new connection and
// is scheduled afresh (IPVS conn_reuse_mode), so a draining backend does
// not get it; anything else keeps the flow on its backend.
func TestReuse(t *testing.T) {
	d := newDatapath(t, Options{})
	// Backend 1 drains: present, but the table only names 2.
	apply(t, d, Txn{Backends: backendsTxn(1, 2)})
	apply(t, d, webTxn(patterned(251, 2)))
	svcs, bes := []uint32{1}, []uint32{1, 2}
	tests := []struct {
		name    string
		state   FlowState
		flags   uint8
		backend uint32
		want    FlowState
		fresh   bool
	}{
		{"SYN after FIN", FlowFIN, thSYN, 2, FlowSYN, true},
		{"SYN after RST", FlowClose, thSYN, 2, FlowSYN, true},
		{"SYN|ACK after FIN stays", FlowFIN, thSYN | thACK, 1, FlowFIN, false},
		{"ACK after FIN stays", FlowFIN, thACK, 1, FlowFIN, false},
		{"SYN on an established flow stays", FlowEst, thSYN, 1, FlowEst, false},
		{"SYN retransmit stays", FlowSYN, thSYN, 1, FlowSYN, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tcp4(uint16(44000+i), tc.flags)
			putFlow(t, d, p.flow(), 1, tc.state)
			s := step{p: p, verdict: verdictTX, backend: tc.backend, svc: 1, state: tc.want}
			if tc.fresh {
				s.counters = newFlow()
			}
			s.check(t, d, svcs, bes)
		})
	}
}

// TestTableSwap: a known flow keeps its backend when a new table sends
// its slot elsewhere; new flows follow the new table.
func TestTableSwap(t *testing.T) {
	d := newDatapath(t, Options{})
	old := patterned(251, 1, 2, 3)
	apply(t, d, Txn{Backends: backendsTxn(1, 2, 3)})
	apply(t, d, webTxn(old))
	svcs, bes := []uint32{1}, []uint32{1, 2, 3}

	p := tcp4(45000, thSYN)
	b := predict(old, p.flow(), false)
	step{p: p, verdict: verdictTX, backend: b, svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)

	// Every slot moves to the next backend.
	next := make([]uint32, len(old))
	for i, id := range old {
		next[i] = id%3 + 1
	}
	apply(t, d, webTxn(next))
	if got := predict(next, p.flow(), false); got == b {
		t.Fatalf("new table keeps the flow's slot on backend %d", b)
	}
	step{p: tcp4(45000, thACK), verdict: verdictTX, backend: b, svc: 1, state: FlowEst}.check(t, d, svcs, bes)

	q := tcp4(45001, thSYN)
	step{p: q, verdict: verdictTX, backend: predict(next, q.flow(), false), svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
}

// findFlow returns a SYN from the client whose slot in table holds want.
func findFlow(t *testing.T, table []uint32, want uint32, base uint16) pkt {
	t.Helper()
	for sport := base; sport < base+1000; sport++ {
		p := tcp4(sport, thSYN)
		if predict(table, p.flow(), false) == want {
			return p
		}
	}
	t.Fatalf("no flow lands on backend %d", want)
	return pkt{}
}

// TestDrain: a flow stays on a backend whose weight went to 0 (present,
// in no table).
func TestDrain(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, Txn{Backends: backendsTxn(1, 2)})
	table := patterned(251, 1, 2)
	apply(t, d, webTxn(table))
	svcs, bes := []uint32{1}, []uint32{1, 2}

	p := findFlow(t, table, 1, 46000)
	step{p: p, verdict: verdictTX, backend: 1, svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
	apply(t, d, webTxn(patterned(251, 2)))
	ack := p.with(func(p *pkt) { p.flags = thACK })
	step{p: ack, verdict: verdictTX, backend: 1, svc: 1, state: FlowEst}.check(t, d, svcs, bes)
	step{p: ack, verdict: verdictTX, backend: 1, svc: 1, state: FlowEst}.check(t, d, svcs, bes)
	// A new flow that the old table would have sent to 1 goes to 2.
	q := findFlow(t, table, 1, p.sport+1)
	step{p: q, verdict: verdictTX, backend: 2, svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
}

// TestRehash: a flow whose backend is removed takes the new table's
// choice, counted as flow_rehash.
func TestRehash(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, Txn{Backends: backendsTxn(1, 2, 3)})
	table := patterned(251, 1, 2, 3)
	apply(t, d, webTxn(table))
	svcs, bes := []uint32{1}, []uint32{1, 2, 3}

	p := findFlow(t, table, 3, 47000)
	step{p: p, verdict: verdictTX, backend: 3, svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
	step{p: p.with(func(p *pkt) { p.flags = thACK }), verdict: verdictTX, backend: 3, svc: 1, state: FlowEst}.check(t, d, svcs, bes)

	next := patterned(251, 1, 2)
	txn := webTxn(next)
	txn.DeleteBackends = []uint32{3}
	apply(t, d, txn)
	if diff := cmp.Diff(map[uint32][6]byte{1: backendMAC(1), 2: backendMAC(2)}, backends(t, d)); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
	ack := p.with(func(p *pkt) { p.flags = thACK | thPSH })
	want := predict(next, p.flow(), false)
	step{p: ack, verdict: verdictTX, backend: want, svc: 1, state: FlowEst,
		counters: map[Counter]uint64{CounterFlowRehash: 1, CounterFlowNew: 1}}.check(t, d, svcs, bes)
	// Re-hashed once: the flow is known again.
	step{p: ack, verdict: verdictTX, backend: want, svc: 1, state: FlowEst}.check(t, d, svcs, bes)
}

// TestNoBackend covers pass_no_backend. Apply refuses every state that
// leads there (a table naming an absent backend, a service without a
// table), so the test writes the maps directly, as a daemon killed
// between two writes or a future bug could leave them.
func TestNoBackend(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, Txn{Backends: backendsTxn(1, 2)})
	apply(t, d, webTxn(patterned(251, 1)))
	svcs, bes := []uint32{1}, []uint32{1, 2}
	noBackend := map[Counter]uint64{CounterPassNoBackend: 1}

	// A known flow on backend 2, before backend 1 goes.
	known := tcp4(48000, thACK)
	putFlow(t, d, known.flow(), 2, FlowEst)
	step{p: known, verdict: verdictTX, backend: 2, svc: 1, state: FlowEst}.check(t, d, svcs, bes)

	// Backend 1 loses its present flag; its MAC stays, so only the flag
	// can tell the program.
	b1 := backendMAC(1)
	if err := d.objs.Backends.Update(uint32(1), lbBackend{Mac: b1}, ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
	step{p: tcp4(48001, thSYN), verdict: verdictPass, counters: noBackend}.check(t, d, svcs, bes)
	// The known flow is untouched by the table's trouble.
	step{p: known, verdict: verdictTX, backend: 2, svc: 1, state: FlowEst}.check(t, d, svcs, bes)

	// Its backend goes too: re-hash finds nothing, the entry stays.
	if err := d.objs.Backends.Update(uint32(2), lbBackend{}, ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
	step{p: known, verdict: verdictPass, backend: 2, state: FlowEst, flowSvc: 1,
		counters: map[Counter]uint64{CounterFlowRehash: 1, CounterPassNoBackend: 1}}.check(t, d, svcs, bes)

	// A table naming backend 0 ("none").
	apply(t, d, Txn{Backends: backendsTxn(1, 2)})
	apply(t, d, webTxn(patterned(7, 1)))
	slot := serviceSlot(t, d, web4)
	inner := innerTable(t, d, slot)
	for i := range uint32(7) {
		if err := inner.Update(i, uint32(0), ebpf.UpdateExist); err != nil {
			t.Fatal(err)
		}
	}
	step{p: tcp4(48002, thSYN), verdict: verdictPass, counters: noBackend}.check(t, d, svcs, bes)

	// A service whose table slot is empty.
	if err := d.objs.Maglev.Delete(slot); err != nil {
		t.Fatal(err)
	}
	step{p: tcp4(48003, thSYN), verdict: verdictPass, counters: noBackend}.check(t, d, svcs, bes)
}

func serviceSlot(t *testing.T, d *Datapath, k ServiceKey) uint32 {
	t.Helper()
	var m lbVipMeta
	if err := d.objs.Services.Lookup(k.bpf(), &m); err != nil {
		t.Fatal(err)
	}
	return m.Table
}

func innerTable(t testing.TB, d *Datapath, slot uint32) *ebpf.Map {
	t.Helper()
	var id ebpf.MapID
	if err := d.objs.Maglev.Lookup(slot, &id); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestSourceHash: a HashSource service sends every connection of a client
// to one backend, whatever its ports; FlowHash predicts which.
func TestSourceHash(t *testing.T) {
	d := newDatapath(t, Options{})
	// The same real servers behind both services, under ids of each.
	table := patterned(251, 1, 2, 3, 4)
	shTable := patterned(251, 11, 12, 13, 14)
	sh := ServiceKey{Addr: vip4, Port: 443, Proto: ipProtoTCP}
	apply(t, d, Txn{
		Backends: mergeBackends(backendsTxn(1, 2, 3, 4), backendsOf(2, 11, 12, 13, 14)),
		Services: []ServiceTable{
			{Key: sh, Service: Service{ID: 2, HashSource: true}, Table: shTable},
			{Key: web4, Service: Service{ID: 1}, Table: table},
		},
	})
	svcs, bes := []uint32{1, 2}, []uint32{1, 2, 3, 4, 11, 12, 13, 14}
	https := func(src netip.Addr, sport uint16) pkt {
		return tcp4(sport, thSYN).with(func(p *pkt) { p.srcIP, p.dport = src, 443 })
	}

	want := predict(shTable, https(client4, 0).flow(), true)
	for _, sport := range []uint16{1024, 33333, 65535} {
		p := https(client4, sport)
		step{p: p, verdict: verdictTX, backend: want, svc: 2, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
	}
	// Another client lands elsewhere, or the test proves nothing.
	other := false
	for i := 1; i < 255 && !other; i++ {
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		b := predict(shTable, https(src, 0).flow(), true)
		if b == want {
			continue
		}
		other = true
		step{p: https(src, 1024), verdict: verdictTX, backend: b, svc: 2, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
	}
	if !other {
		t.Fatal("every client hashes to one backend")
	}
	// The same client's connections to a 5-tuple service spread.
	seen := map[uint32]bool{}
	for sport := uint16(2000); sport < 2016; sport++ {
		p := tcp4(sport, thSYN)
		b := predict(table, p.flow(), false)
		seen[b] = true
		step{p: p, verdict: verdictTX, backend: b, svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
	}
	if len(seen) < 2 {
		t.Errorf("16 connections of one client all hash to %v", seen)
	}
}

// TestPredict: FlowHash and MaglevIndex predict the backend the program
// picks for 1,000 random IPv4 and 1,000 random IPv6 flows, for 5-tuple and
// source-hash services with tables of different sizes.
func TestPredict(t *testing.T) {
	d := newDatapath(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	// Service i's backends are ids 10i+1 .. 10i+5.
	randomTable := func(svc uint32, size int) []uint32 {
		t := make([]uint32, size)
		for i := range t {
			t[i] = 10*svc + 1 + rng.Uint32N(5)
		}
		return t
	}
	type svc struct {
		key   ServiceKey
		hsrc  bool
		table []uint32
	}
	svcs := []svc{
		{ServiceKey{vip4, 80, ipProtoTCP}, false, randomTable(1, 1021)},
		{ServiceKey{vip4, 53, ipProtoUDP}, true, randomTable(2, 251)},
		{ServiceKey{vip6, 80, ipProtoTCP}, false, randomTable(3, 4093)},
		{ServiceKey{vip6, 53, ipProtoUDP}, true, randomTable(4, 509)},
	}
	txn := Txn{Backends: map[uint32]Backend{}}
	for i, s := range svcs {
		id := uint32(i + 1)
		maps.Copy(txn.Backends, backendsOf(id, 10*id+1, 10*id+2, 10*id+3, 10*id+4, 10*id+5))
		txn.Services = append(txn.Services, ServiceTable{Key: s.key, Service: Service{ID: id, HashSource: s.hsrc}, Table: s.table})
	}
	apply(t, d, txn)

	for i := range 2000 {
		s := svcs[2*(i%2)+rng.IntN(2)] // even i: IPv4, odd: IPv6
		p := pkt{dst: macLB, src: macRouter, dstIP: s.key.Addr, proto: s.key.Proto,
			sport: uint16(rng.Uint32()), dport: s.key.Port, flags: thSYN}
		if s.key.Addr.Is4() {
			p.srcIP = netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.Uint32())})
			if rng.IntN(2) == 0 {
				p.srcIP = netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.Uint32())})
			}
		} else {
			var a [16]byte
			a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
			for j := 4; j < 16; j++ {
				a[j] = byte(rng.Uint32())
			}
			p.srcIP = netip.AddrFrom16(a)
		}
		want := predict(s.table, p.flow(), s.hsrc)
		verdict, out := run(t, d, p.build())
		if verdict != verdictTX {
			t.Fatalf("%v: verdict %d", p.flow(), verdict)
		}
		if got := macAddr(out[0:6]); got != backendMAC(want) {
			t.Errorf("%v (hash source %v): sent to %x, FlowHash predicts backend %d", p.flow(), s.hsrc, got, want)
		}
		if e := flowOf(t, d, p.flow()); e == nil || e.Backend != want {
			t.Errorf("%v: flow entry %+v, want backend %d", p.flow(), e, want)
		}
	}
}

// TestFlowAPIv4MappedSource: an IPv6 packet may carry an IPv4-mapped
// source (::ffff:a.b.c.d). The program keys and hashes its 16 bytes as
// they are; Flow, FlowHash and LookupFlow must do the same for an IPv6
// flow, or the prediction and the lookup miss it.
func TestFlowAPIv4MappedSource(t *testing.T) {
	d := newStdDatapath(t)
	p := tcp6(49000, thSYN).with(func(p *pkt) { p.srcIP = netip.MustParseAddr("::ffff:198.51.100.7") })
	verdict, _ := run(t, d, p.build())
	if verdict != verdictTX {
		t.Fatalf("verdict %d", verdict)
	}
	flows := allFlows(t, d)
	if len(flows) != 1 {
		t.Fatalf("flows: %v", flows)
	}
	if diff := cmp.Diff(p.flow(), flows[0].Flow, equateAddr); diff != "" {
		t.Errorf("Flows() entry (-want +got):\n%s", diff)
	}
	if e := flowOf(t, d, flows[0].Flow); e == nil {
		t.Errorf("LookupFlow(%v) of the entry Flows() listed: not found", flows[0].Flow)
	}
	// A table where every backend differs makes a wrong hash visible.
	table := make([]uint32, 251)
	for i := range table {
		table[i] = uint32(31 + i%6)
	}
	apply(t, d, Txn{
		Backends: backendsOf(svcTCP6, 31, 32, 33, 34, 35, 36),
		Services: []ServiceTable{{Key: ServiceKey{vip6, 80, ipProtoTCP}, Service: Service{ID: svcTCP6}, Table: table}},
	})
	for sport := uint16(49001); sport < 49011; sport++ {
		q := p.with(func(q *pkt) { q.sport = sport })
		_, out := run(t, d, q.build())
		want := backendMAC(predict(table, q.flow(), false))
		if got := macAddr(out[0:6]); got != want {
			t.Errorf("%v: sent to %x, FlowHash predicts %x", q.flow(), got, want)
		}
	}
}

// TestExpiry: the program does not follow an entry idle past its state's
// timeout: the flow is scheduled afresh (IPVS would have expired the
// connection), so a drained backend loses it; one unit short of the
// timeout it is followed. The entries are written with their last packet
// in the past of the program's own clock (putFlowAged), and the ages sit
// a unit away from the boundary on either side, so a tick of the clock
// during the test changes nothing.
func TestExpiry(t *testing.T) {
	d := newDatapath(t, Options{})
	// Short and different by state, so a wrong state index shows.
	timeouts := Timeouts{TCP: 40 * time.Second, SynRecv: 20 * time.Second, Fin: 30 * time.Second, Close: 10 * time.Second, UDP: 50 * time.Second}
	if err := d.SetTimeouts(timeouts); err != nil {
		t.Fatal(err)
	}
	hz, err := tickRate()
	if err != nil {
		t.Fatal(err)
	}
	// Backend 1 drains: present, but the table only names 2.
	dns4 := ServiceKey{Addr: vip4, Port: 53, Proto: ipProtoUDP}
	apply(t, d, Txn{Backends: mergeBackends(backendsTxn(1, 2), backendsOf(2, 3, 4))})
	apply(t, d, Txn{Services: []ServiceTable{
		{Key: web4, Service: Service{ID: 1}, Table: patterned(251, 2)},
		{Key: dns4, Service: Service{ID: 2}, Table: patterned(251, 4)},
	}})
	svcs, bes := []uint32{1, 2}, []uint32{1, 2, 3, 4}
	tests := []struct {
		state FlowState
		p     pkt
		svc   uint32
		// drained is where the entry points, fresh where a new flow goes.
		drained, fresh uint32
		after          FlowState // the state a new flow starts in
	}{
		{FlowSYN, tcp4(55000, thSYN), 1, 1, 2, FlowSYN},
		{FlowEst, tcp4(55001, thACK), 1, 1, 2, FlowEst},
		{FlowFIN, tcp4(55002, thACK), 1, 1, 2, FlowEst},
		{FlowClose, tcp4(55003, thACK), 1, 1, 2, FlowEst},
		{FlowUDP, udp4(55004), 2, 3, 4, FlowUDP},
	}
	for _, tc := range tests {
		limit := units(timeouts.For(tc.state), hz)
		t.Run(tc.state.String(), func(t *testing.T) {
			// One unit short of the timeout: followed, to the drained
			// backend, and stamped afresh.
			putFlowAged(t, d, tc.p.flow(), flowSpec{backend: tc.drained, service: tc.svc, state: tc.state, idle: limit - 1})
			st := modelNextState(tc.p.proto, tc.p.flags, tc.state)
			step{p: tc.p, verdict: verdictTX, backend: tc.drained, svc: tc.svc, state: st}.check(t, d, svcs, bes)
			// One unit past it: not followed, scheduled afresh.
			putFlowAged(t, d, tc.p.flow(), flowSpec{backend: tc.drained, service: tc.svc, state: tc.state, idle: limit + 1})
			step{p: tc.p, verdict: verdictTX, backend: tc.fresh, svc: tc.svc, state: tc.after,
				counters: map[Counter]uint64{CounterFlowExpired: 1, CounterFlowNew: 1}}.check(t, d, svcs, bes)
			// The new entry is followed like any other.
			step{p: tc.p, verdict: verdictTX, backend: tc.fresh, svc: tc.svc,
				state: modelNextState(tc.p.proto, tc.p.flags, tc.after)}.check(t, d, svcs, bes)
		})
	}
	// Another CPU may stamp an entry a unit after this one read the
	// clock: an age of -1 is no age, not 2^32-1 units.
	t.Run("stamped ahead", func(t *testing.T) {
		p := tcp4(55010, thACK)
		putFlowAged(t, d, p.flow(), flowSpec{backend: 1, service: 1, state: FlowEst, idle: ^uint32(0)})
		step{p: p, verdict: verdictTX, backend: 1, svc: 1, state: FlowEst}.check(t, d, svcs, bes)
	})
	if got := d.Timeouts(); got != timeouts {
		t.Errorf("Timeouts() = %+v, want %+v", got, timeouts)
	}
}

// TestSetTimeoutsRejects: a timeout of zero, below zero or beyond a year
// is refused and the program keeps the ones it had.
func TestSetTimeoutsRejects(t *testing.T) {
	d := newDatapath(t, Options{})
	for _, bad := range []Timeouts{
		{},
		func() Timeouts { t := DefaultTimeouts; t.UDP = -time.Second; return t }(),
		func() Timeouts { t := DefaultTimeouts; t.Close = 400 * 24 * time.Hour; return t }(),
	} {
		if err := d.SetTimeouts(bad); err == nil {
			t.Errorf("SetTimeouts(%+v) accepted", bad)
		}
	}
	if got := d.Timeouts(); got != DefaultTimeouts {
		t.Errorf("Timeouts() = %+v after rejections, want the defaults %+v", got, DefaultTimeouts)
	}
}

// TestBackendOfAnotherService: an entry is not followed to a backend id
// that now belongs to another service, even while the id is present:
// the id was deleted with its real server and given out again (which the
// balancer's hold prevents; the program does not rely on it). The flow is
// re-hashed within its own service.
func TestBackendOfAnotherService(t *testing.T) {
	d := newDatapath(t, Options{})
	https := ServiceKey{Addr: vip4b, Port: 443, Proto: ipProtoTCP}
	table := patterned(251, 1, 2)
	apply(t, d, Txn{Backends: backendsTxn(1, 2), Services: []ServiceTable{{Key: web4, Service: Service{ID: 1}, Table: table}}})
	svcs, bes := []uint32{1, 2}, []uint32{1, 2}

	p := findFlow(t, table, 2, 56000)
	step{p: p, verdict: verdictTX, backend: 2, svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
	// Backend 2 leaves service 1, and its id goes to service 2's.
	next := patterned(251, 1)
	txn := webTxn(next)
	txn.DeleteBackends = []uint32{2}
	apply(t, d, txn)
	apply(t, d, Txn{Backends: backendsOf(2, 2), Services: []ServiceTable{{Key: https, Service: Service{ID: 2}, Table: patterned(7, 2)}}})

	ack := p.with(func(p *pkt) { p.flags = thACK })
	step{p: ack, verdict: verdictTX, backend: 1, svc: 1, state: FlowEst,
		counters: map[Counter]uint64{CounterFlowRehash: 1, CounterFlowNew: 1}}.check(t, d, svcs, bes)
	// Service 2's own flows reach it.
	q := tcp4(56001, thSYN).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 443 })
	step{p: q, verdict: verdictTX, backend: 2, svc: 2, state: FlowSYN, counters: newFlow()}.check(t, d, svcs, bes)
}
