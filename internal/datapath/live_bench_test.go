package datapath

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-project/xlb/internal/testutil"
)

// BenchmarkLiveFrames measures the forwarding rate with real frames: in a
// network namespace of its own, a generator (bench_gen under
// BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) sends frames out of one
// end of a veth pair, the receiver at the other end sends each back with
// XDP_TX, and bench_sink counts what returns. The receiver is, round by
// round, a MAC-swap program and xlb_xdp (native XDP, one UDP service, one
// backend, the flows established): the rates of each pair of rounds give
// a ratio, and the median ratio is the figure, so a slow spell of a
// shared machine moves both sides of it. One flow and 1,000, and a new
// flow every frame (flows=new: every xlb frame inserts into probation,
// evicting once it is full); one generator CPU and two (a veth queue
// each).
func BenchmarkLiveFrames(b *testing.B) {
	if os.Getuid() != 0 {
		b.Skip("needs root: namespaces, XDP and BPF_PROG_RUN")
	}
	e := newLiveEnv(b)
	for _, flows := range []uint32{1, 1000, 0} {
		for cpus := 1; cpus <= min(2, runtime.NumCPU()); cpus++ {
			name := fmt.Sprintf("flows=%d/cpus=%d", flows, cpus)
			if flows == 0 {
				name = fmt.Sprintf("flows=new/cpus=%d", cpus)
			}
			b.Run(name, func(b *testing.B) { e.measure(b, name, flows, cpus) })
		}
	}
	e.report(os.Stdout)
}

const (
	// liveRepeat is the frames one generator sends per round: a few
	// tenths of a second at ten million a second.
	liveRepeat = 2_000_000
	// liveRounds rounds of each receiver make one b.N iteration.
	liveRounds = 5
)

// xdpMd is struct xdp_md, the context of an XDP test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

type liveResult struct {
	macswap, xlb, ratio float64 // median Mpps, median xlb/macswap
}

type liveEnv struct {
	orig, ns netns.NsHandle
	gen, rx  *net.Interface
	objs     benchLiveObjects
	d        *Datapath
	rxLink   link.Link
	sinkLink link.Link
	frame    []byte
	done     map[string]liveResult
	order    []string
}

// inNetns runs fn on a thread of its own in the benchmark's namespace,
// pinned to cpu when cpu >= 0. The thread is thrown away afterwards
// rather than returned to the pool with another namespace or affinity.
func (e *liveEnv) inNetns(cpu int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(e.ns); err != nil {
			errc <- fmt.Errorf("enter the benchmark's namespace: %w", err)
			return
		}
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errc <- fmt.Errorf("pin to CPU %d: %w", cpu, err)
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

func newLiveEnv(b *testing.B) *liveEnv {
	e := &liveEnv{done: map[string]liveResult{}}
	// A namespace of the benchmark's own, made on a thread thrown away
	// afterwards.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var err error
		if e.orig, err = netns.Get(); err == nil {
			e.ns, err = netns.New()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		b.Fatalf("network namespace: %v", err)
	}
	b.Cleanup(func() { e.ns.Close(); e.orig.Close() })

	pins := testutil.MountBPFFS(b)
	err := e.inNetns(-1, func() error {
		// No IPv6: its neighbour discovery would cross the receiver.
		for _, k := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		veth := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "gen0", NumTxQueues: 2, NumRxQueues: 2},
			PeerName:  "rx0", PeerNumTxQueues: 2, PeerNumRxQueues: 2,
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		for _, name := range []string{"gen0", "rx0"} {
			l, err := netlink.LinkByName(name)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				return fmt.Errorf("%s up: %w", name, err)
			}
		}
		var err error
		if e.gen, err = net.InterfaceByName("gen0"); err != nil {
			return err
		}
		if e.rx, err = net.InterfaceByName("rx0"); err != nil {
			return err
		}

		spec, err := loadBenchLive()
		if err != nil {
			return err
		}
		if err := spec.Variables[benchLiveVarGenDst].Set([6]byte(e.rx.HardwareAddr)); err != nil {
			return err
		}
		if err := spec.Variables[benchLiveVarGenSrc].Set([6]byte(e.gen.HardwareAddr)); err != nil {
			return err
		}
		if err := spec.LoadAndAssign(&e.objs, nil); err != nil {
			return fmt.Errorf("load bench_live: %w", err)
		}
		if e.sinkLink, err = link.AttachXDP(link.XDPOptions{Program: e.objs.BenchSink, Interface: e.gen.Index, Flags: link.XDPDriverMode}); err != nil {
			return fmt.Errorf("attach the sink: %w", err)
		}
		if e.rxLink, err = link.AttachXDP(link.XDPOptions{Program: e.objs.BenchMacswap, Interface: e.rx.Index, Flags: link.XDPDriverMode}); err != nil {
			return fmt.Errorf("attach the receiver: %w", err)
		}
		// xlb as `xlb run` would serve one UDP service with one backend.
		if e.d, err = Load(Options{PinDir: pins + "/xlb", MAC: e.rx.HardwareAddr, FlowTableSize: 65536}); err != nil {
			return err
		}
		return e.d.Apply(Txn{
			Backends: map[uint32]Backend{1: {MAC: e.gen.HardwareAddr, Service: 1}},
			Services: []ServiceTable{{Key: ServiceKey{Addr: benchVIP4, Port: 53, Proto: protoUDP}, Service: Service{ID: 1}, Table: patterned(benchTableSize, 1)}},
		})
	})
	b.Cleanup(func() {
		// The links and programs go with their descriptors, the veth
		// with the namespace.
		for _, l := range []link.Link{e.rxLink, e.sinkLink} {
			if l != nil {
				l.Close()
			}
		}
		if e.d != nil {
			e.d.Close()
		}
		e.objs.Close()
	})
	if err != nil {
		b.Fatal(err)
	}
	e.frame = benchFrame(benchClient4, benchVIP4, 10000, 53, protoUDP, 0)
	return e
}

// sink is how many frames have come back.
func (e *liveEnv) sink() (uint64, error) {
	var per []uint64
	if err := e.objs.SinkCount.Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// run sends repeat frames from each of cpus generators at once and
// returns the rate at which the receiver sent them back, in Mpps.
func (e *liveEnv) run(cpus int, repeat uint32) (float64, error) {
	before, err := e.sink()
	if err != nil {
		return 0, err
	}
	ctx := xdpMd{DataEnd: uint32(len(e.frame)), IngressIfindex: uint32(e.gen.Index)}
	var wg sync.WaitGroup
	errs := make([]error, cpus)
	start := time.Now()
	for cpu := range cpus {
		wg.Go(func() {
			errs[cpu] = e.inNetns(cpu, func() error {
				_, err := e.objs.BenchGen.Run(&ebpf.RunOptions{
					Data: e.frame, Context: ctx, Repeat: repeat,
					Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 64,
				})
				return err
			})
		})
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("live frames: %w", err)
		}
	}
	after, err := e.sink()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / took.Seconds() / 1e6, nil
}

// use makes prog the receiver.
func (e *liveEnv) use(prog *ebpf.Program) error {
	if err := e.rxLink.Update(prog); err != nil {
		return fmt.Errorf("swap the receiver: %w", err)
	}
	return nil
}

func (e *liveEnv) measure(b *testing.B, name string, flows uint32, cpus int) {
	if err := e.objs.GenFlows.Set(flows); err != nil {
		b.Fatal(err)
	}
	// Every flow known to xlb and established, as a busy balancer's are;
	// or, for new flows, probation full already.
	if err := e.use(e.d.objs.XlbXdp); err != nil {
		b.Fatal(err)
	}
	warm := 4*flows + 64
	if flows == 0 {
		warm = 2 * e.d.objs.Probation4.MaxEntries()
	}
	if _, err := e.run(1, warm); err != nil {
		b.Fatal(err)
	}
	if err := promoteAll(e.d); err != nil {
		b.Fatal(err)
	}
	c0, err := e.d.Counters()
	if err != nil {
		b.Fatal(err)
	}
	var macswap, xlb, ratios []float64
	for range liveRounds * b.N {
		var pair [2]float64
		for i, prog := range []*ebpf.Program{e.objs.BenchMacswap, e.d.objs.XlbXdp} {
			if err := e.use(prog); err != nil {
				b.Fatal(err)
			}
			if pair[i], err = e.run(cpus, liveRepeat); err != nil {
				b.Fatal(err)
			}
		}
		macswap, xlb = append(macswap, pair[0]), append(xlb, pair[1])
		ratios = append(ratios, pair[1]/pair[0])
	}
	// Every xlb round took the path the case claims.
	c1, err := e.d.Counters()
	if err != nil {
		b.Fatal(err)
	}
	delta := benchDelta(c0, c1)
	if flows == 0 {
		delete(delta, CounterFlowNew)
	}
	if len(delta) > 0 {
		b.Fatalf("xlb's frames took other paths than the case's: %v", delta)
	}
	r := liveResult{macswap: benchMedian(macswap), xlb: benchMedian(xlb), ratio: benchMedian(ratios)}
	if _, ok := e.done[name]; !ok {
		e.order = append(e.order, name)
	}
	e.done[name] = r
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.macswap, "macswap-Mpps")
	b.ReportMetric(r.xlb, "xlb-Mpps")
	b.ReportMetric(r.ratio, "x-macswap")
}

// report prints every measured case as a table.
func (e *liveEnv) report(w io.Writer) {
	if len(e.done) == 0 {
		return
	}
	fmt.Fprintf(w, "\nlive frames through a veth pair, XDP_TX: median Mpps of rounds of %d frames per generator CPU, alternated\n", liveRepeat)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tmacswap Mpps\txlb Mpps\txlb / macswap")
	for _, name := range slices.Clone(e.order) {
		r := e.done[name]
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\n", name, r.macswap, r.xlb, r.ratio)
	}
	tw.Flush()
}
