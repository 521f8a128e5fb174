package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/maglev"
	"github.com/xlb-project/xlb/internal/testutil"
)

// The reload benchmark's scale: the 1,000 services of 10 backends
// each, every table of the default Maglev size.
const (
	benchServices  = 1000
	benchBackends  = 10
	benchTableSize = maglev.DefaultSize
	benchPortBase  = 20000 // service i listens on port benchPortBase+i
)

// BenchmarkReload measures the control plane at scale: the time to apply a
// full load of 1,000 services x 10 backends to an empty data path and then
// a reload that changes one backend's weight in every service (so every
// table is rebuilt and swapped), the kernel memory the maps then take, and
// the packets a steady flow through the VIP loses while `xlb reload` swaps
// every table under it, which must be none.
func BenchmarkReload(b *testing.B) {
	testutil.RequireRoot(b, "builds the namespace topology and attaches XDP")
	b.Run(fmt.Sprintf("apply/services=%d/backends=%d", benchServices, benchBackends), benchApply)
	b.Run(fmt.Sprintf("steady-flow/services=%d/backends=%d", benchServices, benchBackends), benchSteadyFlow)
}

// benchApply times balancer.Apply on a data path that is loaded but not
// attached: the control plane's own cost, without namespaces.
func benchApply(b *testing.B) {
	fs := testutil.MountBPFFS(b)
	full, reload := benchServiceSet(0), benchServiceSet(1)
	var fullTime, reloadTime time.Duration
	var mem mapMemory
	for i := range b.N {
		b.StopTimer()
		pins := filepath.Join(fs, "xlb"+strconv.Itoa(i))
		dp, err := datapath.Load(datapath.Options{PinDir: pins, MAC: testutil.HostMAC(testutil.LB1)})
		if err != nil {
			b.Fatal(err)
		}
		bal := balancer.New(dp)
		b.StartTimer()

		start := time.Now()
		if err := bal.Apply(full); err != nil {
			b.Fatalf("full load: %v", err)
		}
		mid := time.Now()
		if err := bal.Apply(reload); err != nil {
			b.Fatalf("reload: %v", err)
		}
		end := time.Now()

		b.StopTimer()
		fullTime += mid.Sub(start)
		reloadTime += end.Sub(mid)
		if err := dp.Pin(); err != nil {
			b.Fatal(err)
		}
		if mem, err = measureMapMemory(pins); err != nil {
			b.Fatal(err)
		}
		if err := errors.Join(dp.Unpin(), dp.Close()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(0, "ns/op") // the two phases below are the figures
	b.ReportMetric(float64(fullTime.Milliseconds())/float64(b.N), "full-load-ms")
	b.ReportMetric(float64(reloadTime.Milliseconds())/float64(b.N), "reload-ms")
	b.ReportMetric(float64(mem.total)/(1<<20), "maps-MiB")
	b.ReportMetric(float64(mem.tables)/(1<<20), "tables-MiB")
	b.Logf("map memory: %s", mem)
}

// benchServiceSet is the benchmark's desired state. bump is added to the
// first backend's weight in every service: 0 and 1 give a load and a reload
// that rebuilds every table.
func benchServiceSet(bump uint32) []balancer.Service {
	out := make([]balancer.Service, benchServices)
	for i := range out {
		s := balancer.Service{
			Key:       datapath.ServiceKey{Addr: testutil.VIP4, Port: uint16(benchPortBase + i), Proto: unix.IPPROTO_UDP},
			TableSize: benchTableSize,
		}
		for j := range benchBackends {
			w := uint32(1)
			if j == 0 {
				w += bump
			}
			s.Backends = append(s.Backends, balancer.Backend{
				Addr:   netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + j)}),
				Port:   s.Key.Port,
				Weight: w,
				MAC:    net.HardwareAddr{0x02, 0xbe, 0, 0, 0, byte(j)},
			})
		}
		out[i] = s
	}
	return out
}

// mapMemory is the kernel memory of one data path's maps, as the kernel
// accounts it (bytes_memlock, which recent kernels compute from each map's
// real usage).
type mapMemory struct {
	total, tables uint64
	byMap         map[string]uint64 // pinned maps by name
	nTables       int
}

func (m mapMemory) String() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(m.byMap)) {
		parts = append(parts, fmt.Sprintf("%s %.2f MiB", name, float64(m.byMap[name])/(1<<20)))
	}
	return fmt.Sprintf("%.2f MiB in all: %d Maglev tables %.2f MiB; %s",
		float64(m.total)/(1<<20), m.nTables, float64(m.tables)/(1<<20), strings.Join(parts, ", "))
}

// measureMapMemory sums the memory of the maps pinned in pins and of every
// table their Maglev outer map holds. bpftool reads it, so only
// internal/datapath needs cilium/ebpf.
func measureMapMemory(pins string) (mapMemory, error) {
	var all []struct {
		ID      uint32 `json:"id"`
		Type    string `json:"type"`
		Memlock uint64 `json:"bytes_memlock"`
	}
	if err := bpftoolJSON(&all, "map", "show"); err != nil {
		return mapMemory{}, err
	}
	memlock := map[uint32]uint64{}
	for _, m := range all {
		memlock[m.ID] = m.Memlock
	}
	entries, err := os.ReadDir(pins)
	if err != nil {
		return mapMemory{}, err
	}
	mem := mapMemory{byMap: map[string]uint64{}}
	inner := map[uint32]bool{}
	for _, e := range entries {
		path := filepath.Join(pins, e.Name())
		var m struct {
			ID      uint32 `json:"id"`
			Type    string `json:"type"`
			Memlock uint64 `json:"bytes_memlock"`
		}
		if err := bpftoolJSON(&m, "map", "show", "pinned", path); err != nil {
			return mapMemory{}, err
		}
		mem.byMap[e.Name()] = m.Memlock
		mem.total += m.Memlock
		if m.Type != "array_of_maps" {
			continue
		}
		var slots []struct {
			Value []string `json:"value"` // the inner map's id, little-endian bytes
		}
		if err := bpftoolJSON(&slots, "map", "dump", "pinned", path); err != nil {
			return mapMemory{}, err
		}
		for _, s := range slots {
			var id [4]byte
			for i, h := range s.Value[:min(4, len(s.Value))] {
				v, err := strconv.ParseUint(strings.TrimPrefix(h, "0x"), 16, 8)
				if err != nil {
					return mapMemory{}, fmt.Errorf("bpftool map dump %s: value byte %q: %w", path, h, err)
				}
				id[i] = byte(v)
			}
			inner[binary.LittleEndian.Uint32(id[:])] = true
		}
	}
	for id := range inner {
		v, ok := memlock[id]
		if !ok {
			return mapMemory{}, fmt.Errorf("maglev table map id %d is not in bpftool map show", id)
		}
		mem.tables += v
		mem.nTables++
	}
	mem.total += mem.tables
	return mem, nil
}

func bpftoolJSON(v any, args ...string) error {
	out, err := exec.Command("bpftool", append([]string{"-j"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("bpftool %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return fmt.Errorf("bpftool %s: %w", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("bpftool %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// ---- packets lost during a reload ----

// Rate and margins of the steady flow: it runs from before the reload
// starts until after it has returned.
const (
	flowRate   = 2000 // packets per second
	flowMargin = 300 * time.Millisecond
)

// extraBackendAddrs gives the real servers seven more addresses, so that
// ten distinct backends per service all resolve to a real server's MAC.
var extraBackendAddrs = map[string][]netip.Addr{
	testutil.RS1: {netip.MustParseAddr("198.51.100.21"), netip.MustParseAddr("198.51.100.24"), netip.MustParseAddr("198.51.100.27")},
	testutil.RS2: {netip.MustParseAddr("198.51.100.22"), netip.MustParseAddr("198.51.100.25")},
	testutil.RS3: {netip.MustParseAddr("198.51.100.23"), netip.MustParseAddr("198.51.100.26")},
}

// benchSteadyFlow runs the real daemon in lb1 with 1,000 UDP services of
// 10 backends, sends a steady flow of new UDP flows from the client across
// all of them, and reloads a configuration that changes one backend's
// weight in every service meanwhile. Packet sockets on the real servers
// count what arrives.
func benchSteadyFlow(b *testing.B) {
	topo := newTopology(b)
	addrs := []netip.Addr{}
	for _, rs := range realServers {
		addrs = append(addrs, testutil.HostIP4(rs))
	}
	for _, rs := range realServers {
		for _, a := range extraBackendAddrs[rs] {
			topo.Exec(b, rs, "ip", "addr", "add", a.String()+"/24", "dev", "eth0")
			addrs = append(addrs, a)
		}
	}
	if len(addrs) != benchBackends {
		b.Fatalf("%d backend addresses, want %d", len(addrs), benchBackends)
	}
	conf := filepath.Join(b.TempDir(), "keepalived.conf")
	writeFile(b, conf, benchKeepalived(addrs, 1))
	d := startDaemon(b, topo, conf)

	rx := &seqSet{seen: map[uint64]bool{}}
	var caps []*capture
	for _, rs := range realServers {
		mac := testutil.HostMAC(rs).String()
		caps = append(caps, startCapture(b, topo, rs, func(f []byte, _ int, pt uint8) {
			if pt == unix.PACKET_OUTGOING {
				return
			}
			fr, err := testutil.ParseFrame(f)
			if err != nil || fr.Proto != testutil.ProtoUDP || fr.Dst != testutil.VIP4 {
				return
			}
			seq, ok := flowSeq(fr.Payload)
			if !ok {
				return
			}
			rx.add(seq, fr.DstMAC.String() == mac)
		}))
	}

	snd := newFlowSender(b, topo)
	var lost, sent int64
	var reloadTime time.Duration
	for i := range b.N {
		// Alternate the weight so every iteration changes every table.
		writeFile(b, conf, benchKeepalived(addrs, 2-i%2))
		snd.start()
		snd.waitSent(b, flowRate*int64(flowMargin)/int64(time.Second))
		start := time.Now()
		d.xlb(b, "reload")
		reloadTime += time.Since(start)
		if w := firstWeight(b, d); w != uint32(2-i%2) {
			b.Fatalf("after the reload the first backend serves at weight %d, want %d", w, 2-i%2)
		}
		snd.waitSent(b, snd.sent.Load()+flowRate*int64(flowMargin)/int64(time.Second))
		n := snd.stop(b)
		// Frames still in flight arrive within milliseconds; wait until
		// the count stops moving rather than for a fixed time.
		waitFor(b, 10*time.Second, "the real servers' counts to settle", func() (bool, string) {
			before := rx.count()
			time.Sleep(200 * time.Millisecond)
			return rx.count() == before, fmt.Sprintf("%d received", rx.count())
		})
		sent += n
	}
	for i, c := range caps {
		if drops, err := c.stop(); err != nil || drops > 0 {
			b.Fatalf("capture on %s: %d frames dropped, error %v: the loss count cannot be trusted", realServers[i], drops, err)
		}
	}
	got, misdelivered := rx.result()
	lost = sent - got
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(reloadTime.Milliseconds())/float64(b.N), "xlb-reload-ms")
	b.ReportMetric(float64(sent)/float64(b.N), "sent-pkts")
	b.ReportMetric(float64(lost)/float64(b.N), "lost-pkts")
	if lost != 0 || misdelivered != 0 {
		b.Errorf("a steady flow of %d packets through the VIP lost %d during the reload (%d delivered to a MAC not the real server's)", sent, lost, misdelivered)
	}
}

// firstWeight returns the weight the daemon serves for the first backend
// of the first service: proof that a reload took effect.
func firstWeight(tb testing.TB, d *daemon) uint32 {
	tb.Helper()
	s := findService(d.mustState(tb), testutil.VIP4, benchPortBase)
	if s == nil || len(s.Backends) == 0 {
		tb.Fatalf("the daemon serves no port %d with backends", benchPortBase)
	}
	return s.Backends[0].Weight
}

// benchKeepalived is the steady-flow benchmark's configuration: 1,000 UDP
// services on the VIP, each over the ten backend addresses, the first at
// weight w0 and the others at 1.
func benchKeepalived(addrs []netip.Addr, w0 int) string {
	vs := make([]virtualServer, benchServices)
	for i := range vs {
		vs[i] = virtualServer{VIP: testutil.VIP4, Port: uint16(benchPortBase + i), Proto: "UDP"}
		for j, a := range addrs {
			w := 1
			if j == 0 {
				w = w0
			}
			vs[i].Reals = append(vs[i].Reals, realServer{Addr: a, Weight: w})
		}
	}
	return keepalivedConf(vs...)
}

// flowMagic starts every payload of the steady flow.
var flowMagic = []byte("xlb-flow")

func flowSeq(p []byte) (uint64, bool) {
	if len(p) != len(flowMagic)+8 || string(p[:len(flowMagic)]) != string(flowMagic) {
		return 0, false
	}
	return binary.BigEndian.Uint64(p[len(flowMagic):]), true
}

// seqSet records the sequence numbers that arrived.
type seqSet struct {
	mu           sync.Mutex
	seen         map[uint64]bool
	misdelivered int64
}

func (s *seqSet) add(seq uint64, rightMAC bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[seq] = true
	if !rightMAC {
		s.misdelivered++
	}
}

func (s *seqSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *seqSet) result() (received, misdelivered int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.seen)), s.misdelivered
}

// flowSender sends UDP frames from the client's eth0 at flowRate, each a
// new flow (its own source port) to the next of the services, so every
// frame is scheduled by a Maglev table lookup, not the flow table.
type flowSender struct {
	fd      int
	ifindex int
	seq     uint64
	sent    atomic.Int64
	stopc   chan struct{}
	done    chan error
}

func newFlowSender(tb testing.TB, topo *testutil.Topology) *flowSender {
	tb.Helper()
	s := &flowSender{}
	s.fd, s.ifindex = clientPacketSocket(tb, topo, "sender")
	return s
}

// start sends until stop; sent counts the frames of this run.
func (s *flowSender) start() {
	s.sent.Store(0)
	s.stopc, s.done = make(chan struct{}), make(chan error, 1)
	go func() { s.done <- s.loop() }()
}

func (s *flowSender) loop() error {
	f := testutil.Frame{
		SrcMAC: testutil.HostMAC(testutil.Client),
		DstMAC: testutil.HostMAC(testutil.LB1), // the VIP's owner, as ARP says
		Src:    testutil.HostIP4(testutil.Client),
		Dst:    testutil.VIP4,
		Proto:  testutil.ProtoUDP,
	}
	to := &unix.SockaddrLinklayer{Ifindex: s.ifindex}
	start := time.Now()
	for {
		select {
		case <-s.stopc:
			return nil
		default:
		}
		due := int64(time.Since(start).Seconds() * flowRate)
		for s.sent.Load() < due {
			f.SrcPort = uint16(1024 + s.seq%60000)
			f.DstPort = uint16(benchPortBase + s.seq%benchServices)
			f.Payload = binary.BigEndian.AppendUint64(append([]byte(nil), flowMagic...), s.seq)
			if err := unix.Sendto(s.fd, f.Bytes(), 0, to); err != nil {
				return fmt.Errorf("send frame %d: %w", s.seq, err)
			}
			s.seq++
			s.sent.Add(1)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSent waits until the run has sent n frames.
func (s *flowSender) waitSent(tb testing.TB, n int64) {
	tb.Helper()
	waitFor(tb, 30*time.Second, fmt.Sprintf("the sender to reach %d frames", n), func() (bool, string) {
		select {
		case err := <-s.done:
			tb.Fatalf("sender stopped: %v", err)
		default:
		}
		return s.sent.Load() >= n, fmt.Sprintf("%d sent", s.sent.Load())
	})
}

// stop ends the run and returns how many frames it sent.
func (s *flowSender) stop(tb testing.TB) int64 {
	tb.Helper()
	close(s.stopc)
	if err := <-s.done; err != nil {
		tb.Fatal(err)
	}
	return s.sent.Load()
}

// clientPacketSocket opens a packet socket on the client's eth0 for a
// sender of hand-made frames (who names it in failures), closed at
// cleanup.
func clientPacketSocket(tb testing.TB, topo *testutil.Topology, who string) (fd, ifindex int) {
	tb.Helper()
	err := topo.Do(testutil.Client, func() error {
		s, ifi, err := packetSocket()
		if err != nil {
			return err
		}
		fd, ifindex = s, ifi.Index
		return nil
	})
	if err != nil {
		tb.Fatalf("%s on the client: %v", who, err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return fd, ifindex
}
