package datapath

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
)

// FuzzDatapath runs frames through the program and through the reference
// model (model_test.go) with the same services, backends and flows, and
// requires the same verdict, the same output bytes, the same counters and
// stats, and the same flow table afterwards.
//
// cfg describes the state (see decodeScenario): a few backends, each
// given to one service, some of them stale (a MAC without the present
// flag), up to four services on three VIPs including port-0 and
// source-hash ones, random tables of several sizes that may name absent
// backends or another service's, or no table at all, and optionally a
// flow entry already there for the first frame's tuple, on any backend,
// of any service, in any state, idle for any time around its state's
// timeout. pkt1 and pkt2 are sent in turn.
//
// The state is written straight into the maps rather than through Apply:
// a map-in-map update waits for an RCU grace period (~14 ms here), which
// would cap the fuzzer at a few dozen executions per second. Apply has
// its own tests (txn_test.go).
func FuzzDatapath(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.cfg, s.pkt1, s.pkt2)
	}
	// Tunnel backends need the FIB of a namespace of their own, which
	// every input's goroutine enters.
	n := newTunnelNS(f)
	fuzzIngress = uint32(n.lbIdx)
	envs := [2]*fuzzEnv{newFuzzEnv(f, macLB, n.lbIdx), newFuzzEnv(f, macAddr{}, n.lbIdx)}
	f.Fuzz(func(t *testing.T, cfg, pkt1, pkt2 []byte) {
		n.enter(t)
		sc := decodeScenario(cfg)
		env := envs[sc.env]
		env.set(t, sc, pkt1)
		m := sc.model(env.srcMAC, pkt1)
		for i, frame := range [][]byte{pkt1, pkt2} {
			// The kernel refuses frames shorter than an Ethernet header
			// and longer than a page.
			if len(frame) < 14 || len(frame) > 1500 {
				continue
			}
			env.compare(t, m, i, frame)
		}
	})
}

const (
	fuzzServices = 4
	fuzzMaxTable = 251
	fuzzNoTable  = 99 // a maglev slot that never holds a table
	fuzzAbsentID = 8  // a backend id never written
)

// fuzzIngress is the interface frames come in on: the tunnel
// namespace's lbIf, once FuzzDatapath made it; a scenario only needs it
// to differ from the one interface the program does not serve (77).
var fuzzIngress uint32 = 1

var (
	fuzzBackendIDs = []uint32{1, 2, 3, 4, 5, 6, 7, 65535}
	// fuzzTunnels are a backend's forwarding kinds: direct routing and
	// three tunnels, their addresses filled in by family.
	fuzzTunnels = [4]Tunnel{{}, {Encap: EncapIPIP}, {Encap: EncapGUE, Port: 6080}, {Encap: EncapGUE, Port: 6081, Csum: true}}
	fuzzVIPs    = []netip.Addr{vip4, vip4b, vip6}
	fuzzPorts   = []uint16{0, 80, 443, 53}
	fuzzSizes   = []int{1, 2, 7, 13, fuzzMaxTable}
	// fuzzTimeouts differ by state, so a wrong state index shows; the
	// idle times of fuzzIdles sit 20 units (seconds) away from each.
	fuzzTimeouts = [8]uint32{0, 40, 80, 120, 160, 200, 0, 0}
	fuzzIdles    = []uint32{0, 60, 100, 140, 180, 220, 100_000}
	// fuzzPromote is the promotion age; fuzzAges, added to an idle time
	// of at least 60, sit 20 units away from it. A pre-existing entry idle
	// 0 is also age 0: a tick of the clock during the run must not make
	// it eligible.
	fuzzPromote = uint32(30)
	fuzzAges    = []uint32{0, 10, 50}
)

// fuzzEnv is a loaded program whose service slots already hold tables of
// fuzzMaxTable entries, rewritten in place for each input.
type fuzzEnv struct {
	d      *Datapath
	srcMAC macAddr
	// ifindex is the interface frames arrive on, in the tunnel
	// namespace.
	ifindex int
	tables  [fuzzServices]*ebpf.Map
}

func fuzzSlot(i int) uint32 { return uint32(2 * (i + 1)) }

func newFuzzEnv(f *testing.F, srcMAC macAddr, ifindex int) *fuzzEnv {
	e := &fuzzEnv{d: newDatapath(f, Options{MAC: srcMAC[:]}), srcMAC: srcMAC, ifindex: ifindex}
	if err := e.d.objs.Settings.Set(lbXlbSettings{Timeout: fuzzTimeouts, Promote: fuzzPromote}); err != nil {
		f.Fatal(err)
	}
	for i := range e.tables {
		putTable(f, e.d, fuzzSlot(i), make([]uint32, fuzzMaxTable))
		e.tables[i] = innerTable(f, e.d, fuzzSlot(i))
	}
	return e
}

// scenario is the state one fuzz input runs against.
type scenario struct {
	env      int
	present  map[uint32]modelBackend
	stale    map[uint32]macAddr
	services []fuzzService
	preflow  bool
	pre      modelFlow
}

type fuzzService struct {
	key     ServiceKey
	svc     modelService
	noTable bool
}

// fuzzReader hands out the input's bytes, then zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func decodeScenario(cfg []byte) scenario {
	r := &fuzzReader{b: cfg}
	sc := scenario{present: map[uint32]modelBackend{}, stale: map[uint32]macAddr{}}
	sc.env = int(r.next() & 1)
	pickID := func() uint32 { return fuzzBackendIDs[int(r.next())%len(fuzzBackendIDs)] }
	for n := 1 + int(r.next()%4); n > 0; n-- {
		id := pickID()
		// Mostly service 1's, the first service's; any of them. The
		// low bits make it a tunnel backend: ipip, gue, gue with
		// checksum (of its service's family, set once services are);
		// bits 4-5 put it on no interface named, on the ingress one, or
		// on one the program does not serve.
		b := r.next()
		sc.present[id] = modelBackend{MAC: backendMAC(id), Service: 1 + uint32(b>>6), Tunnel: fuzzTunnels[b&3],
			Ifindex: []uint32{0, fuzzIngress, 77, 0}[b>>4&3]}
	}
	if r.next()%2 == 1 {
		if id := pickID(); sc.present[id] == (modelBackend{}) {
			sc.stale[id] = backendMAC(id)
		}
	}
	ids := make([]uint32, 0, len(sc.present))
	for id := range sc.present {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	seen := map[modelVIP]bool{}
	for i, n := 0, 1+int(r.next()%fuzzServices); i < n; i++ {
		key := ServiceKey{
			Addr: fuzzVIPs[int(r.next())%len(fuzzVIPs)],
			Port: fuzzPorts[int(r.next())%len(fuzzPorts)],
			// A port-0 UDP service too: the fallback is per protocol.
			Proto: []uint8{ipProtoTCP, ipProtoUDP}[r.next()%2],
		}
		flags := r.next()
		size := fuzzSizes[int(r.next())%len(fuzzSizes)]
		rng := rand.New(rand.NewPCG(uint64(r.next()), uint64(i)))
		if seen[vipOf(key)] {
			continue
		}
		seen[vipOf(key)] = true
		svcID := uint32(i + 1)
		// The service's own backends, unless flags say to draw from
		// all of them (another service's, in a table: the program
		// must not send a new flow there).
		own := ids
		if flags&0x40 == 0 {
			own = nil
			for _, id := range ids {
				if sc.present[id].Service == svcID {
					own = append(own, id)
				}
			}
			if len(own) == 0 {
				own = ids
			}
		}
		table := make([]uint32, size)
		for j := range table {
			table[j] = own[rng.IntN(len(own))]
			// Holes: slots naming no backend, or one not present.
			if flags&0x30 == 0x30 && j%3 == 0 {
				table[j] = []uint32{0, fuzzAbsentID}[j%2]
			}
		}
		fs := fuzzService{key: key, svc: modelService{ID: svcID, HashSource: flags&1 != 0, Table: table}}
		if flags&0x80 != 0 {
			// Limited to the VLAN of the tagged seeds, or to one no
			// seed is on.
			fs.svc.VLAN = []uint16{42, 3, 100}[int(flags>>1)%3]
		}
		if flags&0x0e == 0x0e {
			fs.noTable = true
			fs.svc.Table = nil
		}
		sc.services = append(sc.services, fs)
	}
	for id, be := range sc.present {
		if be.Tunnel == (Tunnel{}) {
			continue
		}
		be.Tunnel.Dst, be.Tunnel.Src = rsTun4, lbIf4.Addr()
		for _, s := range sc.services {
			if s.svc.ID == be.Service && s.key.Addr.Is6() {
				be.Tunnel.Dst, be.Tunnel.Src = rsTun6, lbIf6.Addr()
			}
		}
		be.MAC = macAddr{}
		sc.present[id] = be
	}
	if r.next()&1 == 1 {
		sc.preflow = true
		pool := append(slices.Clone(fuzzBackendIDs), 0, fuzzAbsentID)
		sc.pre = modelFlow{
			Backend: pool[int(r.next())%len(pool)],
			State:   FlowState(1 + r.next()%5),
		}
		// Mostly service 1's; the idle time mostly none; in the flow
		// table or in probation.
		ctl := r.next()
		sc.pre.Service = 1 + uint32(ctl>>6)
		sc.pre.Probation = ctl&0x20 != 0
		if ctl&0x10 != 0 {
			sc.pre.Idle = fuzzIdles[int(ctl&0x0f)%len(fuzzIdles)]
		}
		if sc.pre.Idle > 0 {
			sc.pre.Age = fuzzAges[int(r.next())%len(fuzzAges)]
		}
	}
	return sc
}

// model is a model holding sc, with the preflow keyed by the first frame.
func (sc scenario) model(srcMAC macAddr, first []byte) *model {
	m := newModel(srcMAC)
	m.timeouts, m.promote = fuzzTimeouts, fuzzPromote
	maps.Copy(m.backends, sc.present)
	for _, s := range sc.services {
		m.services[vipOf(s.key)] = s.svc
	}
	if sc.preflow {
		if k, _, why := modelParse(first, nil); why == parseOK {
			m.flows[k] = sc.pre
		}
	}
	return m
}

// set writes sc into the maps.
func (e *fuzzEnv) set(t *testing.T, sc scenario, first []byte) {
	d := e.d
	var k lbVipKey
	var keys []lbVipKey
	it := d.objs.Services.Iterate()
	for it.Next(&k, new(lbVipMeta)) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := d.objs.Services.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	clearFlows(t, d)
	clearFrags(t, d)
	for _, id := range fuzzBackendIDs {
		var b lbBackend
		if be, ok := sc.present[id]; ok {
			b = Backend{MAC: be.MAC[:], Service: be.Service, Ifindex: be.Ifindex}.value()
			if be.Tunnel != (Tunnel{}) {
				t := be.Tunnel
				b = Backend{Service: be.Service, Tunnel: &t}.value()
				b.Gen = d.nextGen()
			}
		} else if mac, ok := sc.stale[id]; ok {
			b = lbBackend{Mac: mac}
		}
		if err := d.objs.Backends.Put(id, b); err != nil {
			t.Fatal(err)
		}
	}
	// Every id a flow entry may name (up to 4, see decodeScenario), with
	// a service or not.
	for id := uint32(0); id <= fuzzServices+4; id++ {
		if err := d.objs.SvcVlan.Put(id, uint32(0)); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range sc.services {
		if err := d.objs.SvcVlan.Put(s.svc.ID, uint32(s.svc.VLAN)); err != nil {
			t.Fatal(err)
		}
		meta := lbVipMeta{Id: s.svc.ID, Table: fuzzSlot(i), Size: uint32(len(s.svc.Table))}
		if s.svc.HashSource {
			meta.Flags = svcFlagHashSrc
		}
		if s.noTable {
			meta.Table, meta.Size = fuzzNoTable, 7
		} else {
			idx := make([]uint32, len(s.svc.Table))
			for j := range idx {
				idx[j] = uint32(j)
			}
			if _, err := e.tables[i].BatchUpdate(idx, s.svc.Table, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.objs.Services.Put(s.key.bpf(), meta); err != nil {
			t.Fatal(err)
		}
	}
	var filter vipFilter
	for _, s := range sc.services {
		filter.add(s.key.bpf().Addr)
	}
	have, err := d.readFilter()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.writeFilter(have, &filter); err != nil {
		t.Fatal(err)
	}
	if sc.preflow {
		if k, _, why := modelParse(first, nil); why == parseOK {
			putFlowAged(t, d, k.flow(), flowSpec{backend: sc.pre.Backend, service: sc.pre.Service, state: sc.pre.State,
				idle: sc.pre.Idle, age: sc.pre.Age, probation: sc.pre.Probation})
		}
	}
}

func modelKeyOf(fk lbFlowKey) modelKey {
	k := modelKey{Src: fk.Src, Dst: fk.Dst}
	k.Sport, k.Dport = fk.Sport<<8|fk.Sport>>8, fk.Dport<<8|fk.Dport>>8
	k.Proto, k.Family = fk.Proto, fk.Family
	return k
}

// flowView is a flow entry as the model and the program are compared:
// whether it is expired, not its exact idle time, which the clock moves.
type flowView struct {
	Backend, Service uint32
	State            FlowState
	Expired          bool
	Probation        bool
}

// modelFlows is the model's flow table, viewed.
func (m *model) view() map[modelKey]flowView {
	out := map[modelKey]flowView{}
	for k, f := range m.flows {
		out[k] = flowView{Backend: f.Backend, Service: f.Service, State: f.State, Expired: m.expired(f), Probation: f.Probation}
	}
	return out
}

// programFlows reads the flow table and views it with the model's
// timeouts.
func programFlows(t *testing.T, d *Datapath, m *model) map[modelKey]flowView {
	now, err := d.clock()
	if err != nil {
		t.Fatal(err)
	}
	out := map[modelKey]flowView{}
	for _, tb := range d.flowTables() {
		err := tb.walk(func(fl Flow, v lbFlow) bool {
			f := modelFlow{Backend: v.Backend, Service: uint32(v.Service), State: FlowState(v.State), Idle: uint32(max(int32(now-v.Atime), 0))}
			out[modelKeyOf(fl.bpf6())] = flowView{Backend: f.Backend, Service: f.Service, State: f.State, Expired: m.expired(f), Probation: tb.probation}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (e *fuzzEnv) compare(t *testing.T, m *model, i int, frame []byte) {
	t.Helper()
	svcs := []uint32{1, 2, 3, 4}
	c0, s0 := counters(t, e.d), statsOf(t, e.d, svcs, fuzzBackendIDs)
	verdict, out, err := runIn(e.d, e.ifindex, frame)
	if err != nil {
		t.Fatalf("frame %d: %v", i, err)
	}
	got := modelResult{
		Verdict:  verdict,
		Frame:    out,
		Counters: counterDelta(c0, counters(t, e.d)),
		Stats:    statsDelta(s0, statsOf(t, e.d, svcs, fuzzBackendIDs)),
	}
	want := m.process(frame)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("frame %d %x: program differs from the model (-model +program):\n%s", i, frame, diff)
	}
	if diff := cmp.Diff(m.view(), programFlows(t, e.d, m)); diff != "" {
		t.Fatalf("frame %d %x: flow table differs (-model +program):\n%s", i, frame, diff)
	}
}

func cutOne(b []byte) []byte { return b[:len(b)-1] }

type fuzzSeed struct{ cfg, pkt1, pkt2 []byte }

// fuzzSeeds pairs valid frames, and their follow-ups, with states that
// make them reach every verdict: they run as part of the normal suite.
func fuzzSeeds() []fuzzSeed {
	ack := func(p pkt, flags uint8) []byte { return p.with(func(q *pkt) { q.flags = flags }).build() }
	var frames [][2][]byte
	for _, p := range []pkt{
		tcp4(1000, thSYN), tcp6(1001, thSYN),
		tcp4(1002, thSYN).with(func(p *pkt) { p.dport = 443 }),
		tcp4(1003, thSYN).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 8080 }),
		tcp4(1004, thSYN).with(tagged8021Q),
		tcp4(1005, thSYN).with(func(p *pkt) { p.tags = []vlanTag{{tpidQinQ, 3}}; p.ipOpts = []byte{1, 1, 1, 0} }),
		tcp6(1006, thSYN).with(func(p *pkt) { p.dport = 443; p.pad = 2 }),
	} {
		frames = append(frames,
			[2][]byte{p.build(), ack(p, thACK)},
			[2][]byte{ack(p, thFIN|thACK), p.build()},
			[2][]byte{ack(p, thRST), ack(p, thSYN|thACK)},
			[2][]byte{ack(p, thACK|thPSH), ack(p, thACK|thFIN)},
			[2][]byte{ack(p, thRST|thACK), ack(p, thACK)},
		)
	}
	for _, p := range []pkt{udp4(2000), udp6(2001), udp4(2002).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 80 })} {
		frames = append(frames, [2][]byte{p.build(), p.build()})
	}
	// ICMP errors about the reply on a flow, which the first frame's
	// preflow may hold, and fragments: a datagram's first then a later
	// one, a later one alone, a whole datagram then a fragmented one of
	// its flow.
	for _, p := range []pkt{tcp4(4000, thACK), tcp6(4001, thACK), udp4(4002), udp6(4003),
		tcp4(4004, thACK).with(func(p *pkt) { p.dstIP, p.dport = vip4b, 8080 })} {
		frames = append(frames,
			[2][]byte{p.icmpError(icmpDestUnreach, icmpFragNeeded, 1400).build(), p.build()},
			[2][]byte{p.icmpError(icmp6PacketTooBig, 0, 1280).build(), p.icmpError(icmpTimeExceeded, 0, 0).build()},
			[2][]byte{p.icmpError(icmpEchoReply, 0, 0).build(), p.icmpError(icmpParamProb, 0, 0).build()},
			[2][]byte{p.icmpError(icmpSourceQuench, 0, 0).with(func(q *pkt) { q.payload = q.payload[:len(q.payload)-5] }).build(), nil},
			[2][]byte{p.icmpError(icmpDestUnreach, icmpPortUnreach, 0).with(func(q *pkt) { q.dstIP = otherOf(q.dstIP) }).build(), nil},
		)
		big := p.with(func(q *pkt) { q.payload = make([]byte, 100) })
		fr := big.fragments(48, 0x4242)
		syn := big.with(func(q *pkt) { q.flags = thSYN }).fragments(48, 0x4243)
		frames = append(frames,
			[2][]byte{fr[0].build(), fr[1].build()},
			[2][]byte{fr[2].build(), fr[0].build()},
			[2][]byte{big.build(), fr[0].build()},
			[2][]byte{syn[0].build(), syn[1].build()},
		)
	}
	for _, b := range [][]byte{
		arpRequest(macRouter, client4, vip4),
		tcp4(3000, 0).with(func(p *pkt) { p.proto = ipProtoICMP }).build(),
		tcp6(3001, 0).with(func(p *pkt) { p.proto = ipProtoICMPv6 }).build(),
		tcp4(3002, thSYN).with(func(p *pkt) { p.frag = ipMF }).build(),
		udp6(3003).with(func(p *pkt) { p.proto = ipProtoFragment; p.payload = append(ipv6Ext(ipProtoUDP), make([]byte, 8)...) }).build(),
		tcp6(3009, thSYN).with(func(p *pkt) { p.proto = ipProtoHopOpts; p.payload = ipv6Ext(ipProtoTCP) }).build(),
		tcp4(3004, thSYN).with(func(p *pkt) { p.dstIP = other4 }).build(),
		tcp4(3005, thSYN).build()[:40],
		// One byte short of what the IP header claims.
		cutOne(tcp4(3006, thSYN).build()),
		cutOne(udp6(3007).build()),
		cutOne(udp4(3008).with(tagged8021Q).build()),
	} {
		frames = append(frames, [2][]byte{b, nil})
	}
	// Too big for a tunnel once encapsulated (the namespace's MTU is
	// 1500): answered with an ICMP error, or passed without DF.
	bigACK4 := tcp4(5000, thACK).with(func(p *pkt) { p.payload = make([]byte, 1446) })
	frames = append(frames,
		[2][]byte{bigACK4.build(), bigACK4.with(func(p *pkt) { p.frag = 0 }).build()},
		[2][]byte{tcp6(5001, thACK).with(func(p *pkt) { p.payload = make([]byte, 1406) }).build(), nil},
	)
	cfgs := [][]byte{
		// env, backends (n, ids), stale, services (n, then addr, port,
		// proto, flags, size, seed each), preflow (ctrl, backend, state).
		{0, 2, 0, 1, 1, 0, 3, 0, 1, 0, 4, 7, 2, 1, 0, 0, 0, 4, 9, 1, 0, 1, 0, 2, 1, 5},
		{1, 3, 0, 1, 2, 1, 6, 3, 2, 1, 1, 1, 3, 1, 2, 2, 0, 1, 1, 3, 0, 3, 0, 1, 9, 1, 9, 2},
		{0, 1, 7, 0, 3, 0, 0, 0, 0x30, 2, 4, 1, 0, 0, 1, 3, 5, 2, 1, 0, 0, 2, 6, 1, 2, 3},
		{0, 0, 3, 0, 0, 0, 0, 0, 0x0e, 0, 0, 0, 0},
		{0, 3, 0, 1, 2, 3, 0, 3, 0, 1, 0, 0, 4, 1, 2, 1, 0, 1, 4, 2, 1, 1, 9, 4},
		// One backend of service 1 behind vip4:80/tcp, and an entry on
		// (backends, stale, services, then preflow: ctl, backend,
		// state, service and idle):
		// an absent backend,
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 4, 0, 1, 9, 1, 0},
		// backend 1 but placed by service 2,
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 4, 0, 1, 0, 1, 0x40},
		// backend 1, idle far past every timeout,
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 4, 0, 1, 0, 1, 0x16},
		// backend 1, in probation, first seen 60 units ago: it lasted,
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 4, 0, 1, 0, 1, 0x31, 0},
		// backend 1 of service 2 and an entry of service 2 on it: the
		// table (service 1's) may not name it, nor the entry follow it.
		{0, 0, 0, 0x40, 0, 0, 0, 1, 0, 0x40, 4, 0, 1, 0, 1, 0x40},
		// Tunnel backends: backend 1 of vip4:80/tcp and 2 of vip6:80/tcp,
		// by ipip, gue, gue with checksum; with the last, an entry of
		// service 1 on backend 1 for the first frame, whatever its
		// family: an IPv6 flow on an IPv4 tunnel.
		{0, 1, 0, 1, 1, 0x41, 0, 1, 0, 1, 0, 0, 4, 0, 2, 1, 0, 0, 4, 0, 0},
		{1, 1, 0, 2, 1, 0x42, 0, 1, 0, 1, 0, 0, 4, 0, 2, 1, 0, 0, 4, 0, 0},
		{0, 1, 0, 3, 1, 0x43, 0, 1, 0, 1, 0, 0, 4, 0, 2, 1, 0, 0, 4, 0, 1, 0, 1, 0},
		// backend 1 on the interface frames come in on, then on one
		// the program does not serve: new flows and the entry alike.
		{0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 4, 0, 1, 0, 1, 0},
		{0, 0, 0, 0x20, 0, 0, 0, 1, 0, 0, 4, 0, 1, 0, 1, 0},
	}
	var seeds []fuzzSeed
	for _, c := range cfgs {
		for _, fr := range frames {
			seeds = append(seeds, fuzzSeed{cfg: c, pkt1: fr[0], pkt2: fr[1]})
		}
	}
	// Random states for the valid frames.
	rng := rand.New(rand.NewPCG(3, 4))
	for _, fr := range frames[:35] {
		c := make([]byte, 40)
		for i := range c {
			c[i] = byte(rng.Uint32())
		}
		seeds = append(seeds, fuzzSeed{cfg: c, pkt1: fr[0], pkt2: fr[1]})
	}
	return seeds
}

// TestFuzzSeedsCover: the seed corpus, run through the model alone,
// reaches every verdict and reason, so the normal suite's run of
// FuzzDatapath compares the program with the model on each path.
func TestFuzzSeedsCover(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range fuzzSeeds() {
		sc := decodeScenario(s.cfg)
		m := sc.model(macLB, s.pkt1)
		for _, frame := range [][]byte{s.pkt1, s.pkt2} {
			if len(frame) < 14 {
				continue
			}
			k, flags, _ := modelParse(frame, nil)
			f, known := m.flows[k]
			r := m.process(frame)
			if r.Verdict == verdictTX {
				seen["tx"] = true
				if len(r.Frame) > len(frame) {
					seen["tunnel"] = true
				}
				if known && r.Counters[CounterFlowNew] == 1 && r.Counters[CounterFlowRehash] == 0 {
					seen["reuse"] = true
				}
				if known && f.State != 0 && flags&thSYN == 0 && r.Counters[CounterFlowNew] == 0 {
					seen["known"] = true
				}
			}
			for c := range r.Counters {
				seen[c.String()] = true
			}
		}
		for _, s := range sc.services {
			if s.svc.HashSource {
				seen["hash source"] = true
			}
			if s.key.Port == 0 {
				seen["port 0"] = true
			}
		}
	}
	var missing []string
	for _, w := range []string{"tx", "reuse", "known", "hash source", "port 0",
		"pass_not_ip", "pass_malformed", "pass_fragment", "pass_not_l4", "pass_not_vip",
		"pass_no_backend", "flow_new", "flow_rehash", "flow_expired", "flow_promoted",
		"pass_icmp_no_flow", "pass_fragment_no_first", "flow_icmp_relayed",
		"tunnel", "pass_tun_no_route", "pass_tun_too_big", "flow_too_big_answered"} {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		t.Errorf("seed corpus never reaches %v", missing)
	}
}
