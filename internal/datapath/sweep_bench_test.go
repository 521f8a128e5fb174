package datapath

import (
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// BenchmarkFullTable times what counting connections costs with a full
// flow table of 1M entries per family in the table proper (IPv4 filled)
// and a full probation beside it. Before the sweep, `xlb list` walked the
// whole table per request (walk-ms); now a background pass (sweep-ms, with
// sweep-pause-ms the same pass resting 1 ms between batches of 4096) keeps
// the counts, and a request reads them (counts-us).
func BenchmarkFullTable(b *testing.B) {
	if os.Getuid() != 0 {
		b.Skip("needs root: loads BPF maps")
	}
	const size = 1 << 20
	d, err := Load(Options{PinDir: testutil.MountBPFFS(b) + "/xlb", FlowTableSize: size})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	now, err := d.clock()
	if err != nil {
		b.Fatal(err)
	}
	fill := func(t flowTable, n int) {
		keys := make([]lbFlow4Key, 0, flowBatch)
		vals := make([]lbFlow, 0, flowBatch)
		for i := range n {
			src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			f := Flow{Src: src, Dst: benchVIP4, SrcPort: uint16(1024 + i>>16), DstPort: 80, Proto: protoTCP}
			keys = append(keys, f.bpf4())
			vals = append(vals, lbFlow{Backend: 1 + uint32(i%8), Atime: now, Ctime: now, Service: 1, State: uint8(FlowEst)})
			if len(keys) == cap(keys) || i == n-1 {
				if _, err := t.m.BatchUpdate(keys, vals, nil); err != nil {
					b.Fatalf("fill: %v", err)
				}
				keys, vals = keys[:0], vals[:0]
			}
		}
	}
	fill(flowTable{d.objs.Flows4, true, false}, size)
	// Probation is per-CPU LRU lists: a batch from one CPU fills that
	// CPU's share, and the rest evicts; what stays is what a flood leaves.
	fill(flowTable{d.objs.Probation4, true, true}, int(probationSize(size)))

	var sweeps, paused, walks, reads []time.Duration
	var live int
	for range b.N {
		res, err := d.Sweep(0)
		if err != nil {
			b.Fatal(err)
		}
		sweeps, live = append(sweeps, res.Took), res.Live
		if res, err = d.Sweep(time.Millisecond); err != nil {
			b.Fatal(err)
		}
		paused = append(paused, res.Took)
		start := time.Now()
		n := 0
		if err := d.Flows(func(FlowEntry) bool { n++; return true }); err != nil {
			b.Fatal(err)
		}
		walks = append(walks, time.Since(start))
		start = time.Now()
		c := map[uint32]Conns{}
		for id, v := range res.Backends {
			c[id] = v
		}
		reads = append(reads, time.Since(start))
	}
	if live < size {
		b.Fatalf("%d live entries, want at least the %d of the full table", live, size)
	}
	med := func(s []time.Duration) time.Duration { s = slices.Clone(s); slices.Sort(s); return s[len(s)/2] }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(live), "entries")
	b.ReportMetric(float64(med(walks).Microseconds())/1000, "walk-ms")
	b.ReportMetric(float64(med(sweeps).Microseconds())/1000, "sweep-ms")
	b.ReportMetric(float64(med(paused).Microseconds())/1000, "sweep-pause-ms")
	b.ReportMetric(float64(med(reads).Nanoseconds())/1000, "counts-us")
}
