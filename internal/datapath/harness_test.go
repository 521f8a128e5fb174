package datapath

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlb-project/xlb/internal/testutil"
)

// equateAddr lets cmp compare netip.Addr, which has unexported fields.
var equateAddr = cmpopts.EquateComparable(netip.Addr{})

// XDP verdicts (enum xdp_action).
const (
	verdictAborted = 0
	verdictDrop    = 1
	verdictPass    = 2
	verdictTX      = 3
)

// Addresses of the test topology (TEST-NET and documentation ranges).
var (
	macLB     = macAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01} // the balancer's interface
	macRouter = macAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0xfe} // the client-side router

	vip4    = netip.MustParseAddr("192.0.2.10")
	vip4b   = netip.MustParseAddr("192.0.2.11")
	vip6    = netip.MustParseAddr("2001:db8::10")
	client4 = netip.MustParseAddr("198.51.100.7")
	client6 = netip.MustParseAddr("2001:db8:c::7")
	other4  = netip.MustParseAddr("203.0.113.5")
	other6  = netip.MustParseAddr("2001:db8::99")
)

// otherOf is an address of a's family that is no VIP.
func otherOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return other4
	}
	return other6
}

// backendMAC is the MAC tests give backend id.
func backendMAC(id uint32) macAddr {
	return macAddr{0x02, 0xbe, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
}

// backendsTxn gives ids to service id 1 (web4's in most tests).
func backendsTxn(ids ...uint32) map[uint32]Backend {
	return backendsOf(1, ids...)
}

// backendsOf gives ids to service id svc.
func backendsOf(svc uint32, ids ...uint32) map[uint32]Backend {
	m := map[uint32]Backend{}
	for _, id := range ids {
		b := backendMAC(id)
		m[id] = Backend{MAC: b[:], Service: svc}
	}
	return m
}

// ownBackends gives each id to the service of the same id, as stdSetup
// pairs them.
func ownBackends(ids ...uint32) map[uint32]Backend {
	m := map[uint32]Backend{}
	for _, id := range ids {
		maps.Copy(m, backendsOf(id, id))
	}
	return m
}

// mergeBackends joins backend sets.
func mergeBackends(sets ...map[uint32]Backend) map[uint32]Backend {
	m := map[uint32]Backend{}
	for _, s := range sets {
		maps.Copy(m, s)
	}
	return m
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	testutil.RequireRoot(tb, "loads the XDP program and runs it with BPF_PROG_TEST_RUN")
}

// newDatapath loads the program with its maps pinned in a private bpffs
// under the test's temporary directory, unmounted when the test ends.
func newDatapath(tb testing.TB, opts Options) *Datapath {
	tb.Helper()
	d := load(tb, mountBPFFS(tb), opts)
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return d
}

// mountBPFFS mounts a bpffs of the test's own and returns the pin
// directory to use in it.
func mountBPFFS(tb testing.TB) string {
	tb.Helper()
	requireRoot(tb)
	return filepath.Join(testutil.MountBPFFS(tb), "xlb")
}

// load loads the program pinned at dir; the caller closes it.
func load(tb testing.TB, dir string, opts Options) *Datapath {
	tb.Helper()
	opts.PinDir = dir
	if opts.FlowTableSize == 0 {
		opts.FlowTableSize = 4096
	}
	if opts.MAC == nil {
		opts.MAC = macLB[:]
	}
	d, err := Load(opts)
	if err != nil {
		tb.Fatalf("load: %v", err)
	}
	return d
}

// run passes frame through the program once and returns the verdict and
// the frame as the program left it.
func run(tb testing.TB, d *Datapath, frame []byte) (uint32, []byte) {
	tb.Helper()
	verdict, out, err := d.objs.XlbXdp.Test(frame)
	if err != nil {
		tb.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return verdict, out
}

func apply(tb testing.TB, d *Datapath, t Txn) {
	tb.Helper()
	if err := d.Apply(t); err != nil {
		tb.Fatalf("apply: %v", err)
	}
}

// patterned is a table of size entries cycling through ids.
func patterned(size int, ids ...uint32) []uint32 {
	t := make([]uint32, size)
	for i := range t {
		t[i] = ids[i%len(ids)]
	}
	return t
}

// counterDelta is after - before, without the zero entries.
func counterDelta(before, after map[Counter]uint64) map[Counter]uint64 {
	out := map[Counter]uint64{}
	for c, v := range after {
		if v != before[c] {
			out[c] = v - before[c]
		}
	}
	return out
}

func counters(tb testing.TB, d *Datapath) map[Counter]uint64 {
	tb.Helper()
	c, err := d.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func serviceStats(tb testing.TB, d *Datapath, id uint32) Stats {
	tb.Helper()
	s, err := d.ServiceStats(id)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func backendStats(tb testing.TB, d *Datapath, id uint32) Stats {
	tb.Helper()
	s, err := d.BackendStats(id)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// flowOf returns the flow table's entry for f without its clock-derived
// Idle and without saying which tier holds it, or nil.
func flowOf(tb testing.TB, d *Datapath, f Flow) *FlowEntry {
	tb.Helper()
	e, ok, err := d.LookupFlow(f)
	if err != nil {
		tb.Fatal(err)
	}
	if !ok {
		return nil
	}
	e.Idle, e.Probation = 0, false
	return &e
}

// allFlows lists the flow table, sorted, without Idle and tiers.
func allFlows(tb testing.TB, d *Datapath) []FlowEntry {
	tb.Helper()
	var out []FlowEntry
	if err := d.Flows(func(e FlowEntry) bool {
		e.Idle, e.Probation = 0, false
		out = append(out, e)
		return true
	}); err != nil {
		tb.Fatal(err)
	}
	slices.SortFunc(out, func(a, b FlowEntry) int { return compareFlows(a.Flow, b.Flow) })
	return out
}

func compareFlows(a, b Flow) int {
	if c := a.Src.Compare(b.Src); c != 0 {
		return c
	}
	if c := a.Dst.Compare(b.Dst); c != 0 {
		return c
	}
	if a.SrcPort != b.SrcPort {
		return int(a.SrcPort) - int(b.SrcPort)
	}
	if a.DstPort != b.DstPort {
		return int(a.DstPort) - int(b.DstPort)
	}
	return int(a.Proto) - int(b.Proto)
}

// services lists the services sorted by key, for before/after diffs.
func sortedServices(tb testing.TB, d *Datapath) []ServiceInfo {
	tb.Helper()
	s, err := d.Services()
	if err != nil {
		tb.Fatal(err)
	}
	slices.SortFunc(s, func(a, b ServiceInfo) int {
		if c := a.Key.Addr.Compare(b.Key.Addr); c != 0 {
			return c
		}
		if a.Key.Port != b.Key.Port {
			return int(a.Key.Port) - int(b.Key.Port)
		}
		return int(a.Key.Proto) - int(b.Key.Proto)
	})
	return s
}

func backends(tb testing.TB, d *Datapath) map[uint32][6]byte {
	tb.Helper()
	b, err := d.Backends()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// maglevSlots lists the slots of the outer Maglev map that hold a table,
// not the retired placeholder.
func maglevSlots(tb testing.TB, d *Datapath) []uint32 {
	tb.Helper()
	info, err := d.retired.Info()
	if err != nil {
		tb.Fatal(err)
	}
	retired, _ := info.ID()
	var slot uint32
	var id ebpf.MapID
	var out []uint32
	it := d.objs.Maglev.Iterate()
	for it.Next(&slot, &id) {
		if id != retired {
			out = append(out, slot)
		}
	}
	if err := it.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// clearFlows empties the flow table.
func clearFlows(tb testing.TB, d *Datapath) {
	tb.Helper()
	for _, t := range d.flowTables() {
		if _, err := emptyTable(t); err != nil {
			tb.Fatal(err)
		}
	}
}

// clearFrags empties the fragment records.
func clearFrags(tb testing.TB, d *Datapath) {
	tb.Helper()
	var k lbFragKey
	var keys []lbFragKey
	it := d.objs.Frags.Iterate()
	for it.Next(&k, new(lbFragPorts)) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		tb.Fatal(err)
	}
	for _, k := range keys {
		if err := d.objs.Frags.Delete(k); err != nil {
			tb.Fatal(err)
		}
	}
}

// promoteAll moves every flow in probation to the flow table proper, as
// the program does once a flow has lasted.
func promoteAll(d *Datapath) error {
	for _, t := range d.flowTables() {
		if !t.probation {
			continue
		}
		var moved []Flow
		var vals []lbFlow
		if err := t.walk(func(f Flow, v lbFlow) bool {
			moved, vals = append(moved, f), append(vals, v)
			return true
		}); err != nil {
			return err
		}
		for i, f := range moved {
			to, key := d.tableOf(f, false)
			if err := to.m.Put(key, vals[i]); err != nil {
				return fmt.Errorf("promote %v: %w", f, err)
			}
			_, from := d.tableOf(f, true)
			if err := t.m.Delete(from); err != nil {
				return fmt.Errorf("promote %v: %w", f, err)
			}
		}
	}
	return nil
}

// emptyTable deletes every entry of t and returns how many there were.
func emptyTable(t flowTable) (int, error) {
	if t.ip4 {
		return emptyMap[lbFlow4Key](t.m)
	}
	return emptyMap[lbFlowKey](t.m)
}

func emptyMap[K any](m *ebpf.Map) (int, error) {
	keys := make([]K, flowBatch)
	vals := make([]lbFlow, flowBatch)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("empty flow table: %w", err)
		}
	}
}

// putFlow writes a flow entry as service 1 would have placed it.
func putFlow(tb testing.TB, d *Datapath, f Flow, backend uint32, st FlowState) {
	tb.Helper()
	putFlowAged(tb, d, f, flowSpec{backend: backend, service: 1, state: st})
}

// flowSpec is a flow entry to write: idle is how many atime units ago it
// last saw a packet, age how many before that it saw its first;
// probation puts it there rather than in the flow table proper.
type flowSpec struct {
	backend, service uint32
	state            FlowState
	idle, age        uint32
	probation        bool
}

// putFlowAged writes a flow entry whose last packet was fs.idle units ago
// by the program's own clock: how tests drive the clock an entry is aged
// by without waiting.
func putFlowAged(tb testing.TB, d *Datapath, f Flow, fs flowSpec) {
	tb.Helper()
	now, err := d.clock()
	if err != nil {
		tb.Fatal(err)
	}
	v := lbFlow{Backend: fs.backend, Atime: now - fs.idle, Ctime: now - fs.idle - fs.age, Service: uint16(fs.service), State: uint8(fs.state)}
	t, key := d.tableOf(f, fs.probation)
	if err := t.m.Put(key, v); err != nil {
		tb.Fatal(err)
	}
}

// statsOf reads the stats of the given services and backends.
func statsOf(tb testing.TB, d *Datapath, svcs, bes []uint32) map[statKey]Stats {
	tb.Helper()
	out := map[statKey]Stats{}
	for _, id := range svcs {
		out[statKey{ID: id}] = serviceStats(tb, d, id)
	}
	for _, id := range bes {
		out[statKey{Backend: true, ID: id}] = backendStats(tb, d, id)
	}
	return out
}

// statsDelta is after - before, without the unchanged entries.
func statsDelta(before, after map[statKey]Stats) map[statKey]Stats {
	out := map[statKey]Stats{}
	for k, a := range after {
		b := before[k]
		if a != b {
			out[k] = Stats{Packets: a.Packets - b.Packets, Bytes: a.Bytes - b.Bytes, Flows: a.Flows - b.Flows}
		}
	}
	return out
}

// step is one frame of a table-driven case and everything it must do.
type step struct {
	p       pkt
	frame   []byte // sent instead of p.build() when set (PASS cases)
	verdict uint32
	backend uint32    // verdictTX: where the frame goes
	svc     uint32    // verdictTX: the service whose stats move
	state   FlowState // the flow's state afterwards; 0: no entry for p
	// flowSvc is the service id the entry holds afterwards when not svc
	// (a PASS that leaves an entry as it was).
	flowSvc uint32
	// counters are the reason counters the frame moves; nil means none.
	counters map[Counter]uint64
}

// check runs s through d and compares verdict, bytes, counters, stats of
// the listed services and backends, and the flow entry of s.p.
func (s step) check(t *testing.T, d *Datapath, svcs, bes []uint32) {
	t.Helper()
	frame := s.frame
	if frame == nil {
		frame = s.p.build()
	}
	c0, s0 := counters(t, d), statsOf(t, d, svcs, bes)
	verdict, out := run(t, d, frame)
	c1, s1 := counters(t, d), statsOf(t, d, svcs, bes)

	want := frame
	wantStats := map[statKey]Stats{}
	if s.verdict == verdictTX {
		want = s.p.forwarded(macLB, backendMAC(s.backend))
		st := Stats{Packets: 1, Bytes: uint64(len(frame)), Flows: s.counters[CounterFlowNew]}
		wantStats[statKey{ID: s.svc}] = st
		wantStats[statKey{Backend: true, ID: s.backend}] = st
	}
	if verdict != s.verdict {
		t.Errorf("verdict %d, want %d", verdict, s.verdict)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("frame out (-want +got):\n%s", diff)
	}
	wantCounters := s.counters
	if wantCounters == nil {
		wantCounters = map[Counter]uint64{}
	}
	if diff := cmp.Diff(wantCounters, counterDelta(c0, c1)); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantStats, statsDelta(s0, s1)); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if s.p.dstIP.IsValid() {
		var wantFlow *FlowEntry
		if s.state != 0 {
			wantFlow = &FlowEntry{Flow: s.p.flow(), Backend: s.backend, Service: s.flowSvc, State: s.state}
			if s.flowSvc == 0 {
				wantFlow.Service = s.svc
			}
		}
		if diff := cmp.Diff(wantFlow, flowOf(t, d, s.p.flow()), equateAddr); diff != "" {
			t.Errorf("flow entry (-want +got):\n%s", diff)
		}
	}
}

// putTable stores a new table in slot, as Apply does before a service
// switches to it.
func putTable(tb testing.TB, d *Datapath, slot uint32, table []uint32) {
	tb.Helper()
	m, err := d.newTable(table)
	if err != nil {
		tb.Fatal(err)
	}
	defer m.Close()
	if err := d.putSlots([]uint32{slot}, []*ebpf.Map{m}); err != nil {
		tb.Fatal(err)
	}
}
