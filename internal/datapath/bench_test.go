package datapath

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-project/xlb/internal/testutil"
)

// BenchmarkXDP times each path of xlb_xdp with BPF_PROG_TEST_RUN beside
// baselines built and run in the same process: bench_bare (parse, compare
// one VIP, rewrite MACs), bench_lookup (one service hash lookup, one flow
// LRU lookup, one backend array lookup) and xdp_pass (nothing: the test
// run's own cost, which every figure includes). ns/pkt is the kernel's
// time per run, the median of 5*b.N rounds of benchRepeat runs; x-lookup
// is the median ratio of a round to a bench_lookup round run right after
// it.
//
// New flows go through bench_wrapper, which gives each run a fresh tuple
// and tail-calls the program under test; their ns/pkt is net of the
// wrapper's own cost, (wrapper+bare) - bare, and raw-ns/pkt includes it.
// lookup-new is bench_lookup inserting each flow: the flow-table insert
// alone, which x-lookup-new compares xlb's new flows with.
//
// Every case checks the verdict and, for xlb_xdp, the counters, so a case
// that took another path than it claims (a known flow where a new one was
// meant, an eviction in a table said to have room) fails rather than
// report the wrong path's time.
func BenchmarkXDP(b *testing.B) {
	testutil.RequireRoot(b, "loads BPF programs and runs them with BPF_PROG_TEST_RUN")
	e := newBenchEnv(b)
	for _, c := range e.cases {
		b.Run(c.name, func(b *testing.B) { e.run(b, c) })
	}
	e.report(os.Stdout)
}

const (
	// benchRepeat is the runs per BPF_PROG_TEST_RUN call: enough to make
	// the syscall's own cost vanish from the kernel's per-run figure.
	benchRepeat = 1_000_000
	// benchRoundsPerOp rounds make one b.N iteration, so -benchtime 1x
	// still yields a median.
	benchRoundsPerOp = 5
	// benchFlowsRoomy holds a whole round of new flows plus the LRU's
	// per-CPU free lists, so new-tcp4 inserts without evicting; the table
	// is emptied after every round. It is the size of both the flow table
	// and probation, where new flows go. bench_lookup's table has this
	// size too (BENCH_LOOKUP_FLOWS).
	benchFlowsRoomy = 1 << 20
	// benchFlowsFull is kept full, so each insert of new-tcp4-full evicts
	// the least recently used flow: a busy balancer's steady state.
	benchFlowsFull = 1 << 16
	benchTableSize = 16381 // the default Maglev size
)

var (
	benchLBMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	benchClientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	benchBackends  = map[uint32]net.HardwareAddr{
		1: {0x02, 0, 0, 0, 0, 0x11},
		2: {0x02, 0, 0, 0, 0, 0x12},
		3: {0x02, 0, 0, 0, 0, 0x13},
	}
	benchClient4 = netip.MustParseAddr("198.51.100.10")
	benchClient6 = netip.MustParseAddr("2001:db8:1::10")
	benchVIP4    = netip.MustParseAddr("192.0.2.10")
	benchVIP6    = netip.MustParseAddr("2001:db8::10")
	benchOther4  = netip.MustParseAddr("192.0.2.99") // no service
)

// XDP verdicts and TCP flags, as the kernel numbers them.
const (
	benchXDPPass = 2
	benchXDPTX   = 3
	benchSYN     = 0x02
	benchACK     = 0x10
)

// benchCase is one measured path.
type benchCase struct {
	name  string
	note  string
	prog  *ebpf.Program
	frame []byte
	want  uint32 // verdict of every run
	// wrapped cases run through bench_wrapper, whose cost is subtracted.
	wrapped bool
	// setup runs before the first round: insert the flow, point the
	// wrapper, read the counters.
	setup func() error
	// between runs after every round; it fails when the round did not do
	// what the case claims.
	between func() error
	// check verifies the side effects of all runs together.
	check func(runs uint64) error
}

type benchResult struct {
	ns, raw float64 // median ns/pkt; raw includes the wrapper
	xLookup float64 // median ratio of ns to bench_lookup's, round by round
}

type benchEnv struct {
	roomy, full *Datapath
	pass        xdppassObjects
	bare        benchBareObjects
	lookup      benchLookupObjects
	wrapper     benchWrapperObjects

	cases []benchCase
	done  map[string]benchResult
}

func newBenchEnv(b *testing.B) *benchEnv {
	e := &benchEnv{done: map[string]benchResult{}}
	e.roomy = benchLoad(b, benchFlowsRoomy)
	e.full = benchLoad(b, benchFlowsFull)

	if err := loadXdppassObjects(&e.pass, nil); err != nil {
		b.Fatalf("load xdp_pass: %v", err)
	}
	b.Cleanup(func() { e.pass.Close() })

	spec, err := loadBenchBare()
	if err != nil {
		b.Fatal(err)
	}
	if err := spec.Variables[benchBareVarBareVip].Set(benchVIP4.As4()); err != nil {
		b.Fatal(err)
	}
	if err := spec.Variables[benchBareVarBareBackendMac].Set([6]byte(benchBackends[1])); err != nil {
		b.Fatal(err)
	}
	if err := spec.LoadAndAssign(&e.bare, nil); err != nil {
		b.Fatalf("load bench_bare: %v", err)
	}
	b.Cleanup(func() { e.bare.Close() })

	if err := loadBenchLookupObjects(&e.lookup, nil); err != nil {
		b.Fatalf("load bench_lookup: %v", err)
	}
	b.Cleanup(func() { e.lookup.Close() })

	if err := loadBenchWrapperObjects(&e.wrapper, nil); err != nil {
		b.Fatalf("load bench_wrapper: %v", err)
	}
	b.Cleanup(func() { e.wrapper.Close() })

	ack4 := benchFrame(benchClient4, benchVIP4, 12345, 80, protoTCP, benchACK)
	syn4 := benchFrame(benchClient4, benchVIP4, 12345, 80, protoTCP, benchSYN)
	e.cases = []benchCase{
		{name: "xdp-pass", note: "returns XDP_PASS: the test run's own cost, in every figure", prog: e.pass.XdpPass, frame: ack4, want: benchXDPPass},
		{name: "bare", note: "parse, one VIP compare, MAC rewrite", prog: e.bare.BenchBare, frame: ack4, want: benchXDPTX},
		{name: "lookup", note: "service hash + flow LRU + backend array", prog: e.lookup.BenchLookup, frame: ack4, want: benchXDPTX, setup: e.fillLookup},
		{
			name: "wrapper+bare", note: "the wrapper's cost is this minus bare",
			prog: e.wrapper.BenchWrapper, frame: syn4, want: benchXDPTX,
			setup: func() error { return e.point(e.bare.BenchBare) },
		},
		e.newFlow("lookup-new", "lookup, inserting every flow (table with room)", e.lookup.BenchLookup, flowTable{e.lookup.BenchFlows, true, true}, nil, syn4),
		e.known("known-tcp4", "ACK of an established flow", ack4, 1, false),
		e.known("young-tcp4", "SYN again, of a flow in probation: two lookups", benchFrame(benchClient4, benchVIP4, 12346, 80, protoTCP, benchSYN), 1, true),
		e.newFlow("new-tcp4", fmt.Sprintf("SYN, flow insert, table with room (%d, emptied each round)", benchFlowsRoomy),
			e.roomy.objs.XlbXdp, flowTable{e.roomy.objs.Probation4, true, true}, e.roomy, syn4),
		e.newFlow("new-tcp4-full", fmt.Sprintf("SYN, flow insert, full table (%d): every insert evicts", benchFlowsFull),
			e.full.objs.XlbXdp, flowTable{e.full.objs.Probation4, true, true}, e.full, syn4),
		e.known("udp4", "UDP of a known flow", benchFrame(benchClient4, benchVIP4, 12345, 53, protoUDP, 0), 2, false),
		e.known("known-tcp6", "IPv6 ACK of an established flow", benchFrame(benchClient6, benchVIP6, 12345, 80, protoTCP, benchACK), 3, false),
		e.pass4("pass-not-vip", "TCP to an address with no service: XDP_PASS",
			benchFrame(benchClient4, benchOther4, 12345, 80, protoTCP, benchACK)),
		e.relay("icmp-relay4", "frag-needed for an established flow: quote parse, flow lookup", 1, CounterFlowICMPRelayed,
			benchPkt(12345, 80, protoTCP).icmpError(icmpDestUnreach, icmpFragNeeded, 1400).build(), ack4),
		e.relay("frag-later4", "later fragment of a UDP datagram: record lookup, flow lookup", 2, 0,
			benchFrags[1].build(), benchFrags[0].build()),
	}
	return e
}

// benchLoad loads xlb_xdp with maps pinned in a private bpffs and the
// benchmark's services: TCP and UDP on the IPv4 VIP, TCP on the IPv6 one.
func benchLoad(b *testing.B, flows uint32) *Datapath {
	pins := b.TempDir() + "/pins"
	// Probation's LRU lists are per CPU, each holding its share of the
	// map: room for a whole round of new flows on any one CPU.
	d, err := Load(Options{PinDir: pins, MAC: benchLBMAC, FlowTableSize: flows, ProbationSize: flows * uint32(runtime.NumCPU())})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = d.Close()
		_ = unmount(pins)
	})
	// A test run's repeats see the frame the previous repeat wrote, and
	// the program passes frames addressed to another host's MAC. With
	// every backend at the balancer's own MAC the rewritten frame is again
	// addressed to the balancer, so each repeat does the forwarding work.
	// Each service has backends of its own: ids are per service.
	keys := []ServiceKey{
		{Addr: benchVIP4, Port: 80, Proto: protoTCP},
		{Addr: benchVIP4, Port: 53, Proto: protoUDP},
		{Addr: benchVIP6, Port: 80, Proto: protoTCP},
	}
	txn := Txn{Backends: map[uint32]Backend{}}
	n := uint32(len(benchBackends))
	for i, k := range keys {
		svc := uint32(i + 1)
		table := make([]uint32, benchTableSize)
		for j := range table {
			table[j] = n*(svc-1) + 1 + uint32(j)%n
		}
		for id := n*(svc-1) + 1; id <= n*svc; id++ {
			txn.Backends[id] = Backend{MAC: benchLBMAC, Service: svc}
		}
		txn.Services = append(txn.Services, ServiceTable{Key: k, Service: Service{ID: svc}, Table: table})
	}
	if err := d.Apply(txn); err != nil {
		b.Fatal(err)
	}
	return d
}

// fillLookup gives bench_lookup the service, flow and backend of the
// known-flow frame.
func (e *benchEnv) fillLookup() error {
	vk := benchLookupVipKey{Addr: addrBytes(benchVIP4, afInet), Port: htons(80), Proto: protoTCP, Family: afInet}
	if err := e.lookup.BenchServices.Update(vk, benchLookupVipMeta{Id: 1}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bench_lookup services: %w", err)
	}
	f := Flow{Src: benchClient4, Dst: benchVIP4, SrcPort: 12345, DstPort: 80, Proto: protoTCP}.bpf4()
	fk := benchLookupFlow4Key{Src: f.Src, Dst: f.Dst, Sport: f.Sport, Dport: f.Dport, Proto: f.Proto}
	if err := e.lookup.BenchFlows.Update(fk, benchLookupFlow{Backend: 1, State: uint8(FlowEst)}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bench_lookup flows: %w", err)
	}
	be := benchLookupBackend{Mac: [6]byte(benchBackends[1]), Flags: backendPresent}
	if err := e.lookup.BenchBackends.Update(uint32(1), be, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bench_lookup backends: %w", err)
	}
	return nil
}

// point makes prog the wrapper's tail-call target.
func (e *benchEnv) point(prog *ebpf.Program) error {
	if err := e.wrapper.BenchProgs.Update(uint32(0), prog, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bench_wrapper: tail-call slot: %w", err)
	}
	return nil
}

// wrapped returns how many runs bench_wrapper has made.
func (e *benchEnv) wrapped() (uint32, error) {
	var n uint32
	if err := e.wrapper.BenchRuns.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("bench_wrapper: run counter: %w", err)
	}
	return n, nil
}

// known times a packet of a flow the table already has: a run before the
// first round inserts it, into probation, and unless young it is then
// moved to the flow table proper, as a flow that lasted is.
func (e *benchEnv) known(name, note string, frame []byte, svc uint32, young bool) benchCase {
	d := e.roomy
	var before map[Counter]uint64
	var stats Stats
	return benchCase{
		name: name, note: note, prog: d.objs.XlbXdp, frame: frame, want: benchXDPTX,
		setup: func() error {
			if ret, _, err := d.objs.XlbXdp.Test(frame); err != nil || ret != benchXDPTX {
				return fmt.Errorf("insert the flow: verdict %d, %v", ret, err)
			}
			if !young {
				if err := promoteAll(d); err != nil {
					return err
				}
			}
			var err error
			if before, err = d.Counters(); err != nil {
				return err
			}
			stats, err = d.ServiceStats(svc)
			return err
		},
		check: func(runs uint64) error {
			after, err := d.Counters()
			if err != nil {
				return err
			}
			if delta := benchDelta(before, after); len(delta) > 0 {
				return fmt.Errorf("known flow: runs took other paths: %v", delta)
			}
			s, err := d.ServiceStats(svc)
			if err != nil {
				return err
			}
			if n := s.Packets - stats.Packets; n < runs {
				return fmt.Errorf("known flow: %d runs but service %d forwarded %d packets", runs, svc, n)
			}
			return nil
		},
	}
}

// newFlow times a SYN of a new flow through the wrapper. d is nil for
// bench_lookup, which has no counters. In a table with room, the flows
// removed after each round are counted: fewer than the round inserted
// means the LRU evicted after all.
func (e *benchEnv) newFlow(name, note string, target *ebpf.Program, flows flowTable, d *Datapath, frame []byte) benchCase {
	evicts := d == e.full
	var before map[Counter]uint64
	var start, last uint32
	c := benchCase{
		name: name, note: note, prog: e.wrapper.BenchWrapper, frame: frame, want: benchXDPTX, wrapped: true,
		setup: func() error {
			if err := e.point(target); err != nil {
				return err
			}
			if evicts {
				if _, _, err := e.wrapper.BenchWrapper.Benchmark(frame, 2*int(flows.m.MaxEntries()), nil); err != nil {
					return fmt.Errorf("fill the flow table: %w", err)
				}
			} else if _, err := emptyTable(flows); err != nil {
				return err
			}
			var err error
			if d != nil {
				if before, err = d.Counters(); err != nil {
					return err
				}
			}
			start, err = e.wrapped()
			last = start
			return err
		},
	}
	if !evicts {
		c.between = func() error {
			n, err := e.wrapped()
			if err != nil {
				return err
			}
			inserted := n - last
			last = n
			left, err := emptyTable(flows)
			if err != nil {
				return err
			}
			// More is fine: the paired lookup round puts its flow back.
			if left < int(inserted) {
				return fmt.Errorf("new flow: %d inserts but %d flows in the table: the LRU evicted", inserted, left)
			}
			return nil
		}
	}
	if d != nil {
		c.check = func(uint64) error {
			after, err := d.Counters()
			if err != nil {
				return err
			}
			n, err := e.wrapped()
			if err != nil {
				return err
			}
			delta := benchDelta(before, after)
			if got, want := delta[CounterFlowNew], uint64(n-start); got != want {
				return fmt.Errorf("new flow: %d runs but %d flow inserts (counters %v)", want, got, delta)
			}
			delete(delta, CounterFlowNew)
			if len(delta) > 0 {
				return fmt.Errorf("new flow: runs took other paths: %v", delta)
			}
			return nil
		}
	}
	return c
}

// pass4 times a packet for an address with no service.
func (e *benchEnv) pass4(name, note string, frame []byte) benchCase {
	d := e.roomy
	var before map[Counter]uint64
	return benchCase{
		name: name, note: note, prog: d.objs.XlbXdp, frame: frame, want: benchXDPPass,
		setup: func() error {
			var err error
			before, err = d.Counters()
			return err
		},
		check: func(runs uint64) error {
			after, err := d.Counters()
			if err != nil {
				return err
			}
			delta := benchDelta(before, after)
			if delta[CounterPassNotVIP] < runs {
				return fmt.Errorf("pass: %d runs but counters %v", runs, delta)
			}
			delete(delta, CounterPassNotVIP)
			if len(delta) > 0 {
				return fmt.Errorf("pass: runs took other paths: %v", delta)
			}
			return nil
		},
	}
}

// benchPkt is a client's packet to the IPv4 VIP as the test frame
// builders make it, addressed to the balancer.
func benchPkt(sport, dport uint16, proto uint8) pkt {
	return pkt{
		dst: macAddr(benchLBMAC), src: macAddr(benchClientMAC), srcIP: benchClient4, dstIP: benchVIP4,
		proto: proto, sport: sport, dport: dport, flags: benchACK, frag: ipDF, payload: make([]byte, 100),
	}
}

// benchFrags is a UDP datagram in three fragments.
var benchFrags = benchPkt(12347, 53, protoUDP).fragments(48, 0x77)

// relay times a packet that takes its flow from elsewhere (an ICMP
// error's quote, a first fragment's record) to a flow in the flow table,
// which the frames of setup make. Every run moves counter (none if
// zero) and forwards for service svc.
func (e *benchEnv) relay(name, note string, svc uint32, counter Counter, frame []byte, setup ...[]byte) benchCase {
	d := e.roomy
	var before map[Counter]uint64
	var stats Stats
	return benchCase{
		name: name, note: note, prog: d.objs.XlbXdp, frame: frame, want: benchXDPTX,
		setup: func() error {
			for _, f := range setup {
				if ret, _, err := d.objs.XlbXdp.Test(f); err != nil || ret != benchXDPTX {
					return fmt.Errorf("set up the flow: verdict %d, %v", ret, err)
				}
			}
			if err := promoteAll(d); err != nil {
				return err
			}
			var err error
			if before, err = d.Counters(); err != nil {
				return err
			}
			stats, err = d.ServiceStats(svc)
			return err
		},
		check: func(runs uint64) error {
			after, err := d.Counters()
			if err != nil {
				return err
			}
			delta := benchDelta(before, after)
			if counter != 0 {
				if delta[counter] < runs {
					return fmt.Errorf("%s: %d runs but counters %v", name, runs, delta)
				}
				delete(delta, counter)
			}
			if len(delta) > 0 {
				return fmt.Errorf("%s: runs took other paths: %v", name, delta)
			}
			s, err := d.ServiceStats(svc)
			if err != nil {
				return err
			}
			if n := s.Packets - stats.Packets; n < runs {
				return fmt.Errorf("%s: %d runs but service %d forwarded %d packets", name, runs, svc, n)
			}
			return nil
		},
	}
}

// benchDelta returns the counters that changed, by how much.
func benchDelta(before, after map[Counter]uint64) map[Counter]uint64 {
	out := map[Counter]uint64{}
	for c, v := range after {
		if v != before[c] {
			out[c] = v - before[c]
		}
	}
	return out
}

// run measures c with 5*b.N rounds and reports the median.
func (e *benchEnv) run(b *testing.B, c benchCase) {
	r, err := e.measure(c, benchRoundsPerOp*b.N)
	if err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	b.ReportMetric(0, "ns/op") // an op is rounds of a million runs each
	b.ReportMetric(r.ns, "ns/pkt")
	if c.name != "lookup" {
		b.ReportMetric(r.xLookup, "x-lookup")
	}
	if c.wrapped {
		b.ReportMetric(r.raw, "raw-ns/pkt")
		if c.name != "lookup-new" {
			ln, err := e.result("lookup-new")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(r.ns/ln.ns, "x-lookup-new")
		}
	}
}

// measure runs c's setup, then rounds BPF_PROG_TEST_RUN calls of
// benchRepeat runs each, checks the verdict and side effects, and records
// the median. Each round is followed by a round of bench_lookup and
// x-lookup is the median of the pairs' ratios: a slow spell of a shared
// machine then moves both sides of a ratio, not one.
func (e *benchEnv) measure(c benchCase, rounds int) (benchResult, error) {
	if c.setup != nil {
		if err := c.setup(); err != nil {
			return benchResult{}, err
		}
	}
	ref := e.cases[slices.IndexFunc(e.cases, func(c benchCase) bool { return c.name == "lookup" })]
	if c.name != ref.name {
		if err := ref.setup(); err != nil {
			return benchResult{}, err
		}
	}
	per := make([]time.Duration, 0, rounds)
	refs := make([]time.Duration, 0, rounds)
	for range rounds {
		d, err := benchRound(c)
		if err != nil {
			return benchResult{}, err
		}
		per = append(per, d)
		if c.between != nil {
			if err := c.between(); err != nil {
				return benchResult{}, err
			}
		}
		if c.name != ref.name {
			if d, err = benchRound(ref); err != nil {
				return benchResult{}, fmt.Errorf("paired %s: %w", ref.name, err)
			}
			refs = append(refs, d)
		}
	}
	if c.check != nil {
		if err := c.check(uint64(rounds) * benchRepeat); err != nil {
			return benchResult{}, err
		}
	}
	var cost float64
	if c.wrapped {
		var err error
		if cost, err = e.wrapperCost(); err != nil {
			return benchResult{}, err
		}
	}
	ratios := make([]float64, len(refs))
	for i := range refs {
		ratios[i] = (float64(per[i]) - cost) / float64(refs[i])
	}
	r := benchResult{raw: float64(benchMedian(per).Nanoseconds()), xLookup: 1}
	r.ns = r.raw - cost
	if len(ratios) > 0 {
		r.xLookup = benchMedian(ratios)
	}
	e.done[c.name] = r
	return r, nil
}

// benchRound is one BPF_PROG_TEST_RUN call of benchRepeat runs; it
// returns the kernel's time per run.
func benchRound(c benchCase) (time.Duration, error) {
	ret, d, err := c.prog.Benchmark(c.frame, benchRepeat, nil)
	if err != nil {
		return 0, err
	}
	if ret != c.want {
		return 0, fmt.Errorf("verdict %d, want %d", ret, c.want)
	}
	return d, nil
}

func benchMedian[T time.Duration | float64](s []T) T {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

// result returns the latest figures of a case, measuring it here when
// -bench filtered it out.
func (e *benchEnv) result(name string) (benchResult, error) {
	if r, ok := e.done[name]; ok {
		return r, nil
	}
	i := slices.IndexFunc(e.cases, func(c benchCase) bool { return c.name == name })
	r, err := e.measure(e.cases[i], benchRoundsPerOp)
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// wrapperCost is what bench_wrapper adds to the program it calls.
func (e *benchEnv) wrapperCost() (float64, error) {
	wb, err := e.result("wrapper+bare")
	if err != nil {
		return 0, err
	}
	bare, err := e.result("bare")
	if err != nil {
		return 0, err
	}
	return wb.ns - bare.ns, nil
}

// report prints every measured case as a table.
func (e *benchEnv) report(w io.Writer) {
	if len(e.done) == 0 {
		return
	}
	lookupNew, haveLookupNew := e.done["lookup-new"]
	fmt.Fprintf(w, "\nBPF_PROG_TEST_RUN, ns per run: median of rounds of %d runs; new flows net of the wrapper\n", benchRepeat)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\tns/pkt\tx lookup\tx lookup-new\traw ns/pkt\tmeasures")
	for _, c := range e.cases {
		r, ok := e.done[c.name]
		if !ok {
			continue
		}
		ratio, ratioNew, raw := fmt.Sprintf("%.2f", r.xLookup), "", ""
		if c.wrapped {
			raw = fmt.Sprintf("%.0f", r.raw)
			if haveLookupNew {
				ratioNew = fmt.Sprintf("%.2f", r.ns/lookupNew.ns)
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\n", c.name, r.ns, ratio, ratioNew, raw, c.note)
	}
	tw.Flush()
}

// benchFrame builds an Ethernet frame from the client to the balancer
// with an IPv4 or IPv6 header and a TCP (with flags) or UDP header, no
// payload. Checksums are left zero: the programs do not read them.
func benchFrame(src, dst netip.Addr, sport, dport uint16, proto uint8, flags uint8) []byte {
	l4len := 8
	if proto == protoTCP {
		l4len = 20
	}
	f := append([]byte{}, benchLBMAC...)
	f = append(f, benchClientMAC...)
	if src.Is4() {
		f = binary.BigEndian.AppendUint16(f, 0x0800)
		f = append(f, 0x45, 0)
		f = binary.BigEndian.AppendUint16(f, uint16(20+l4len))
		f = append(f, 0, 0, 0x40, 0, 64, proto, 0, 0) // id, DF, ttl, proto, checksum
		f = append(f, src.AsSlice()...)
		f = append(f, dst.AsSlice()...)
	} else {
		f = binary.BigEndian.AppendUint16(f, 0x86dd)
		f = append(f, 0x60, 0, 0, 0)
		f = binary.BigEndian.AppendUint16(f, uint16(l4len))
		f = append(f, proto, 64)
		f = append(f, src.AsSlice()...)
		f = append(f, dst.AsSlice()...)
	}
	f = binary.BigEndian.AppendUint16(f, sport)
	f = binary.BigEndian.AppendUint16(f, dport)
	if proto == protoTCP {
		f = append(f, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0)
	} else {
		f = binary.BigEndian.AppendUint16(f, 8)
		f = append(f, 0, 0)
	}
	return f
}
