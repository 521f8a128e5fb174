package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-project/xlb/internal/testutil"
)

// The virtual router both balancers run, and the UDP echo port the probe
// streams use (rsserver echoes TCP on echoPort; udpecho the same port
// over UDP).
const (
	failoverVRID = 51
	probePort    = echoPort
	// lb1 is the preferred master, lb2 the standby.
	lb1Priority = 150
	lb2Priority = 100
)

// lbPriority is each LB's VRRP priority.
var lbPriority = map[string]int{testutil.LB1: lb1Priority, testutil.LB2: lb2Priority}

// vrrpTimes are the VRRP timings of one run, as both LBs are configured.
type vrrpTimes struct {
	advert time.Duration
	// preemptDelay keeps a returning lb1 in BACKUP for a while after it
	// starts: long enough to check it holds nothing there.
	preemptDelay time.Duration
}

// skew is RFC 5798's Skew_Time of an LB of priority prio.
func (v vrrpTimes) skew(prio int) time.Duration {
	return time.Duration(256-prio) * v.advert / 256
}

// masterDown is RFC 5798's Master_Down_Interval of an LB of priority prio.
func (v vrrpTimes) masterDown(prio int) time.Duration { return 3*v.advert + v.skew(prio) }

// seconds formats d as keepalived.conf writes timers.
func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// vrrpInstanceConf is the vrrp_instance block of an LB, the same for xlb
// and keepalived: VRRPv3 (advert_int below a second needs it), the VIP
// on the bridge-facing eth0, preempt on. dont_track_primary keeps a node
// whose cable the test pulls before killing it as it would be at a real
// node's death: master, with the VIP, rather than in FAULT for the moment
// between the two (TestLinkFault covers that path).
func vrrpInstanceConf(v vrrpTimes, prio int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n    vrrp_version 3\n}\n")
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n    state BACKUP\n    interface eth0\n    dont_track_primary\n    virtual_router_id %d\n    priority %d\n    advert_int %s\n    preempt\n",
		failoverVRID, prio, seconds(v.advert))
	if v.preemptDelay > 0 {
		fmt.Fprintf(&b, "    preempt_delay %s\n", seconds(v.preemptDelay))
	}
	fmt.Fprintf(&b, "    virtual_ipaddress {\n        %s/32 dev eth0\n    }\n}\n", testutil.VIP4)
	return b.String()
}

// failoverServices are the services both LBs forward: the echo port over
// TCP (the long-lived connections) and over UDP (the probe stream).
func failoverServices() string {
	all := reals(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1})
	return keepalivedConf(
		virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP", Reals: all},
		virtualServer{VIP: testutil.VIP4, Port: probePort, Proto: "UDP", Reals: all},
	)
}

// newFailoverTopology builds the namespaces with the VIP on neither LB:
// VRRP alone places it.
//
// The bridge keeps flooding unknown unicast to both LBs, as a switch does:
// when the master's port goes down the bridge forgets its MAC and floods
// what the client still sends there. The standby's XDP program must pass
// those frames (they are for another host's MAC) rather than forward them,
// or the crash outage would be hidden here and doubled on a real network.
func newFailoverTopology(tb testing.TB) *testutil.Topology {
	tb.Helper()
	testutil.RequireRoot(tb, "builds the namespace topology and attaches XDP")
	obj := filepath.Join(testutil.MustRepoRoot(tb), "internal", "datapath", "xdppass_bpfel.o")
	return testutil.NewTopology(tb, testutil.TopologyOptions{XDPPassObj: obj})
}

// startUDPEcho runs udpecho on probePort in rs1..rs3.
func startUDPEcho(tb testing.TB, topo *testutil.Topology) {
	tb.Helper()
	bin := testutil.BuildBinary(tb, "./internal/testutil/cmd/udpecho")
	for _, rs := range realServers {
		p := topo.Start(tb, rs, bin, "-listen", fmt.Sprintf(":%d", probePort))
		waitReady(tb, p, "udpecho in "+rs)
	}
}

// lbDaemon is an `xlb run` on lb1 or lb2.
type lbDaemon struct {
	*daemon
	host string
	// killed is set once the test killed the process; its exit is then
	// not checked.
	killed atomic.Bool
}

// hostDirs are each balancer's pin and runtime directories, kept across
// its restarts within a test as /sys/fs/bpf/xlb and /run/xlb are on a
// real host: a run after a crash finds there the dead run's pinned XDP
// link, flow table and backend ids and takes them over.
var hostDirs sync.Map // topo.NS(host) -> [2]string

func dirsOf(tb testing.TB, topo *testutil.Topology, host string) (pins, run string) {
	tb.Helper()
	if p, ok := hostDirs.Load(topo.NS(host)); ok {
		d := p.([2]string)
		return d[0], d[1]
	}
	d := [2]string{filepath.Join(testutil.MountBPFFS(tb), "xlb"), tb.TempDir()}
	hostDirs.Store(topo.NS(host), d)
	tb.Cleanup(func() { hostDirs.Delete(topo.NS(host)) })
	return d[0], d[1]
}

// startLB runs `xlb run` on host's eth0 with the configuration text conf,
// in native XDP mode with the host's pin and runtime directories, and
// waits until it serves with every backend resolved. A daemon still
// running at cleanup is stopped with SIGTERM and must exit cleanly. args
// are more flags for xlb run; its state directory is the host's runtime
// directory, kept across restarts as /var/lib/xlb is.
func startLB(tb testing.TB, topo *testutil.Topology, host, conf string, args ...string) *lbDaemon {
	tb.Helper()
	return startLBWith(tb, topo, host, conf, testutil.BuildBinary(tb, "./cmd/xlb"), args...)
}

// startLBWith is startLB with the xlb binary bin (another build, say).
func startLBWith(tb testing.TB, topo *testutil.Topology, host, conf, bin string, args ...string) *lbDaemon {
	tb.Helper()
	dir := tb.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	writeFile(tb, path, conf)
	pins, run := dirsOf(tb, topo, host)
	d := &lbDaemon{host: host, daemon: &daemon{
		topo:   topo,
		bin:    bin,
		conf:   path,
		socket: filepath.Join(run, "xlb.sock"),
		pins:   pins,
	}}
	d.proc = topo.StartNet(tb, host, append([]string{d.bin, "run", "-f", path, "-i", "eth0",
		"--xdp-mode", "native", "--bpffs", d.pins, "--socket", d.socket, "--state-dir", run}, args...)...)
	tb.Cleanup(func() {
		if err := d.proc.Stop(); err != nil && !d.killed.Load() {
			tb.Errorf("xlb run in %s did not exit cleanly on SIGTERM: %v\n%s", host, err, d.proc.Output())
		}
	})
	d.waitServing(tb, "xlb run in "+host)
	return d
}

// startPair starts lb1 on conf1 and waits until it holds the VIP, then
// lb2 on conf2, and returns once the client has seen lb1 advertise for
// two of lb2's Master_Down_Intervals (mdi) after lb2 started: a wrongly
// eager lb2 has had its chance to go wrong.
func startPair(tb testing.TB, topo *testutil.Topology, vips *vipWatch, link *linkLog, mdi time.Duration, conf1, conf2 string) (lb1, lb2 *lbDaemon) {
	tb.Helper()
	lb1 = startLB(tb, topo, testutil.LB1, conf1)
	vips.waitHolders(tb, 10*time.Second, testutil.LB1)
	lb2 = startLB(tb, topo, testutil.LB2, conf2)
	lb2Up := time.Now()
	waitFor(tb, 10*time.Second, "lb2 to hear lb1 for two Master_Down_Intervals", func() (bool, string) {
		n := len(link.find("vrrp", testutil.LB1, since(lb2Up.Add(2*mdi))))
		return n > 0, fmt.Sprintf("%d advertisements from lb1", n)
	})
	return lb1, lb2
}

// kill kills the daemon with SIGKILL and waits for it to be gone.
func (d *lbDaemon) kill(tb testing.TB) {
	tb.Helper()
	d.killed.Store(true)
	d.signal(tb, syscall.SIGKILL)
	<-d.proc.Done()
}

// stop sends SIGTERM and waits for a clean exit: the graceful handover
// runs inside it.
func (d *lbDaemon) stop(tb testing.TB) {
	tb.Helper()
	d.signal(tb, syscall.SIGTERM)
	select {
	case <-d.proc.Done():
	case <-time.After(30 * time.Second):
		tb.Fatalf("xlb run in %s still running 30 s after SIGTERM", d.host)
	}
	if err := d.proc.Stop(); err != nil {
		tb.Fatalf("xlb run in %s did not exit cleanly on SIGTERM: %v\n%s", d.host, err, d.proc.Output())
	}
}

// vrrpStates returns the states the daemon's VRRP instance logged, in
// order.
func (d *lbDaemon) vrrpStates() []string {
	var out []string
	for _, l := range strings.Split(d.proc.Output(), "\n") {
		if !strings.Contains(l, `msg="state change"`) {
			continue
		}
		for _, f := range strings.Fields(l) {
			if s, ok := strings.CutPrefix(f, "to="); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// setCable sets host's port on the bridge up or down: a pulled cable, as
// a node that dies looks to the rest of the network. The host keeps its
// own configuration.
func setCable(tb testing.TB, topo *testutil.Topology, host string, up bool) {
	tb.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "-n", topo.NS("br"), "link", "set", "dev", host, state).CombinedOutput(); err != nil {
		tb.Fatalf("set %s's bridge port %s: %v\n%s", host, state, err, out)
	}
}

// ---- who holds the VIP ----

// vipWatch polls lb1's and lb2's eth0 for the VIP.
type vipWatch struct {
	mu    sync.Mutex
	holds map[string]bool
	// both is the longest time both held the VIP at once.
	both      time.Duration
	bothSince time.Time
	// held is set once an LB held the VIP; absent then counts the polls
	// that found it on neither.
	held   bool
	absent int
	stop   chan struct{}
	done   chan struct{}
}

// vipPollInterval paces the VIP watch: fine enough to see a dual hold of
// one advertisement interval.
const vipPollInterval = 5 * time.Millisecond

func watchVIP(tb testing.TB, topo *testutil.Topology) *vipWatch {
	tb.Helper()
	w := &vipWatch{holds: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	handles := map[string]*netlink.Handle{}
	for _, host := range []string{testutil.LB1, testutil.LB2} {
		ns, err := netns.GetFromPath(topo.NSPath(host))
		if err != nil {
			tb.Fatal(err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			tb.Fatalf("netlink in %s: %v", host, err)
		}
		handles[host] = h
	}
	go func() {
		defer close(w.done)
		defer func() {
			for _, h := range handles {
				h.Close()
			}
		}()
		t := time.NewTicker(vipPollInterval)
		defer t.Stop()
		for {
			w.poll(handles)
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	tb.Cleanup(func() { close(w.stop); <-w.done })
	w.poll(handles)
	return w
}

func (w *vipWatch) poll(handles map[string]*netlink.Handle) {
	holds := map[string]bool{}
	for host, h := range handles {
		addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == testutil.VIP4 {
				holds[host] = true
			}
		}
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holds = holds
	if len(holds) > 0 {
		w.held = true
	} else if w.held {
		w.absent++
	}
	switch both := len(holds) == 2; {
	case both && w.bothSince.IsZero():
		w.bothSince = now
	case !both && !w.bothSince.IsZero():
		w.both = max(w.both, now.Sub(w.bothSince))
		w.bothSince = time.Time{}
	}
}

// holders returns the LBs that hold the VIP now, sorted.
func (w *vipWatch) holders() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for h := range w.holds {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// waitHolders waits until exactly hosts hold the VIP.
func (w *vipWatch) waitHolders(tb testing.TB, within time.Duration, hosts ...string) {
	tb.Helper()
	slices.Sort(hosts)
	waitFor(tb, within, fmt.Sprintf("the VIP to be held by %v only", hosts), func() (bool, string) {
		got := w.holders()
		return slices.Equal(got, hosts), fmt.Sprintf("held by %v", got)
	})
}

// waitHeldBy waits until host holds the VIP, whoever else does.
func (w *vipWatch) waitHeldBy(tb testing.TB, within time.Duration, host string) {
	tb.Helper()
	waitFor(tb, within, fmt.Sprintf("%s to hold the VIP", host), func() (bool, string) {
		got := w.holders()
		return slices.Contains(got, host), fmt.Sprintf("held by %v", got)
	})
}

// resetBoth forgets the dual holds seen so far.
func (w *vipWatch) resetBoth() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.both = 0
	if !w.bothSince.IsZero() {
		w.bothSince = time.Now()
	}
}

// absences returns how many polls found the VIP on neither LB after one
// had first held it.
func (w *vipWatch) absences() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.absent
}

// longestBoth returns the longest time both LBs held the VIP.
func (w *vipWatch) longestBoth() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.both
}

// ---- what the client sees on the link ----

// l2Event is an ARP or VRRP frame the client saw.
type l2Event struct {
	at   time.Time
	kind string // "garp", "arp-reply" or "vrrp"
	mac  string // the sender's hardware address
	src  netip.Addr
	prio uint8 // VRRP only
}

// linkLog records, from a capture on the client's eth0, every gratuitous
// ARP and ARP reply for the VIP and every VRRP advertisement.
type linkLog struct {
	mu     sync.Mutex
	events []l2Event
	cap    *capture
}

func watchLink(tb testing.TB, topo *testutil.Topology) *linkLog {
	tb.Helper()
	l := &linkLog{}
	l.cap = startCapture(tb, topo, testutil.Client, func(f []byte, _ int, pt uint8) {
		if pt == unix.PACKET_OUTGOING {
			return
		}
		if e, ok := parseL2(f); ok {
			e.at = time.Now()
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		}
	})
	return l
}

// ipProtoVRRP is VRRP's IP protocol number.
const ipProtoVRRP = 112

// parseL2 recognises ARP for the VIP and VRRP for failoverVRID.
func parseL2(f []byte) (l2Event, bool) {
	if len(f) < 14 {
		return l2Event{}, false
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case unix.ETH_P_ARP:
		a := f[14:]
		if len(a) < 28 || binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != unix.ETH_P_IP || a[4] != 6 || a[5] != 4 {
			return l2Event{}, false
		}
		op := binary.BigEndian.Uint16(a[6:])
		spa, tpa := netip.AddrFrom4([4]byte(a[14:18])), netip.AddrFrom4([4]byte(a[24:28]))
		e := l2Event{mac: net.HardwareAddr(a[8:14]).String(), src: spa}
		switch {
		case spa != testutil.VIP4:
			return l2Event{}, false
		case tpa == spa:
			e.kind = "garp"
		case op == 2:
			e.kind = "arp-reply"
		default:
			return l2Event{}, false
		}
		return e, true
	case unix.ETH_P_IP:
		src, dst, proto, ok := ipv4(f)
		ihl := int(f[14]&0x0f) * 4
		if !ok || proto != ipProtoVRRP || dst != netip.MustParseAddr("224.0.0.18") || len(f) < 14+ihl+8 {
			return l2Event{}, false
		}
		v := f[14+ihl:]
		if v[1] != failoverVRID {
			return l2Event{}, false
		}
		return l2Event{kind: "vrrp", mac: net.HardwareAddr(f[6:12]).String(), src: src, prio: v[2]}, true
	}
	return l2Event{}, false
}

// find returns the events of kind from src (an LB's address) that match
// keep, in order.
func (l *linkLog) find(kind, host string, keep func(l2Event) bool) []l2Event {
	mac := testutil.HostMAC(host).String()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []l2Event
	for _, e := range l.events {
		if e.kind == kind && e.mac == mac && (keep == nil || keep(e)) {
			out = append(out, e)
		}
	}
	return out
}

// since keeps events at or after t.
func since(t time.Time) func(l2Event) bool { return func(e l2Event) bool { return !e.at.Before(t) } }

// before keeps events before t.
func before(t time.Time) func(l2Event) bool { return func(e l2Event) bool { return e.at.Before(t) } }

// waitEvent waits for an event of kind from host that keep accepts and
// returns the first.
func (l *linkLog) waitEvent(tb testing.TB, within time.Duration, kind, host string, keep func(l2Event) bool) l2Event {
	tb.Helper()
	var got []l2Event
	waitFor(tb, within, fmt.Sprintf("the client to see a %s from %s", kind, host), func() (bool, string) {
		got = l.find(kind, host, keep)
		return len(got) > 0, "none yet"
	})
	return got[0]
}

// awaitNext waits, polling every millisecond rather than at waitFor's
// pace, for the next event of kind from host after now and returns it: an
// event can then be timed against it.
func (l *linkLog) awaitNext(tb testing.TB, within time.Duration, kind, host string) l2Event {
	tb.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if got := l.find(kind, host, since(start)); len(got) > 0 {
			return got[0]
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatalf("the client saw no %s from %s within %v", kind, host, within)
	return l2Event{}
}

// arpWho asks, from the client, who has the VIP (a broadcast ARP request
// from a packet socket, so the client's own neighbour entry does not get
// in the way) and returns the hosts that answered within wait.
func arpWho(tb testing.TB, topo *testutil.Topology, l *linkLog, wait time.Duration) []string {
	tb.Helper()
	start := time.Now()
	err := topo.Do(testutil.Client, func() error {
		fd, ifi, err := packetSocket()
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		f := make([]byte, 0, 42)
		f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		f = append(f, ifi.HardwareAddr...)
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_ARP)
		f = binary.BigEndian.AppendUint16(f, 1) // Ethernet
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_IP)
		f = append(f, 6, 4)
		f = binary.BigEndian.AppendUint16(f, 1) // request
		f = append(f, ifi.HardwareAddr...)
		f = append(f, testutil.HostIP4(testutil.Client).AsSlice()...)
		f = append(f, make([]byte, 6)...)
		f = append(f, testutil.VIP4.AsSlice()...)
		return unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_ARP)})
	})
	if err != nil {
		tb.Fatalf("ARP request from the client: %v", err)
	}
	time.Sleep(wait)
	var out []string
	for _, host := range []string{testutil.LB1, testutil.LB2} {
		if len(l.find("arp-reply", host, since(start))) > 0 {
			out = append(out, host)
		}
	}
	return out
}

// ---- the probe stream ----

// probeInterval is the probe stream's pace: one UDP probe a millisecond.
const probeInterval = time.Millisecond

// prober sends a UDP probe through the VIP every probeInterval from the
// client and records which came back; a probe is one flow, so it follows
// the LB the client's ARP cache names.
type prober struct {
	c     *net.UDPConn
	start time.Time

	mu   sync.Mutex
	sent []time.Duration // send time of each sequence number since start
	got  []bool
	nGot int

	stopc chan struct{}
	sendc chan error
	recvc chan error
}

// probeOutage is what a probe stream saw.
type probeOutage struct {
	sent, lost int
	// gap is the longest stretch without an answered probe: between the
	// send times of the answered probes either side of the lost ones.
	gap time.Duration
}

func (o probeOutage) String() string {
	return fmt.Sprintf("%d of %d probes lost, longest gap %v", o.lost, o.sent, o.gap.Round(100*time.Microsecond))
}

func startProber(tb testing.TB, topo *testutil.Topology) *prober {
	tb.Helper()
	p := &prober{stopc: make(chan struct{}), sendc: make(chan error, 1), recvc: make(chan error, 1)}
	err := topo.Do(testutil.Client, func() error {
		var err error
		p.c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(testutil.VIP4, probePort)))
		return err
	})
	if err != nil {
		tb.Fatalf("probe socket on the client: %v", err)
	}
	p.start = time.Now()
	tb.Cleanup(func() { p.halt() })
	go func() { p.sendc <- p.sendLoop() }()
	go func() { p.recvc <- p.recvLoop() }()
	return p
}

// sendLoop sends probe n at start + n x probeInterval. A sender that fell
// behind (descheduled on a busy machine) catches up at once rather than
// skipping probes, so the count of lost probes keeps its meaning.
func (p *prober) sendLoop() error {
	buf := make([]byte, 16)
	for seq := uint64(0); ; seq++ {
		if wait := time.Until(p.start.Add(time.Duration(seq+1) * probeInterval)); wait > 0 {
			select {
			case <-p.stopc:
				return nil
			case <-time.After(wait):
			}
		} else {
			select {
			case <-p.stopc:
				return nil
			default:
			}
		}
		binary.BigEndian.PutUint64(buf, seq)
		copy(buf[8:], "xlbprobe")
		p.mu.Lock()
		p.sent = append(p.sent, time.Since(p.start))
		p.got = append(p.got, false)
		p.mu.Unlock()
		// A send refused while the neighbour is unresolved is a probe
		// lost, which is what is being measured.
		_, _ = p.c.Write(buf)
	}
}

func (p *prober) recvLoop() error {
	buf := make([]byte, 64)
	for {
		n, err := p.c.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// ICMP errors (port unreachable while a server is gone)
			// surface here; they are losses, not failures.
			continue
		}
		if n != 16 || string(buf[8:16]) != "xlbprobe" {
			continue
		}
		seq := binary.BigEndian.Uint64(buf)
		p.mu.Lock()
		if seq < uint64(len(p.got)) && !p.got[seq] {
			p.got[seq] = true
			p.nGot++
		}
		p.mu.Unlock()
	}
}

// probeDrain is how long answers may still arrive after the last probe.
const probeDrain = 200 * time.Millisecond

// finish stops sending, waits for answers still in flight, and returns
// the outage.
func (p *prober) finish(tb testing.TB) probeOutage {
	tb.Helper()
	close(p.stopc)
	if err := <-p.sendc; err != nil {
		tb.Fatal(err)
	}
	time.Sleep(probeDrain)
	p.halt()
	p.mu.Lock()
	defer p.mu.Unlock()
	return outage(p.sent, p.got)
}

// answered returns how many probes have come back.
func (p *prober) answered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nGot
}

// waitAnswered waits, up to within, until n more probes than now have
// come back; what names the probes in a failure.
func (p *prober) waitAnswered(tb testing.TB, within time.Duration, n int, what string) {
	tb.Helper()
	from := p.answered()
	waitFor(tb, within, what+" to be answered", func() (bool, string) {
		got := p.answered() - from
		return got >= n, fmt.Sprintf("%d answered", got)
	})
}

// halt closes the socket; the receiver then ends.
func (p *prober) halt() {
	if p.c.Close() == nil {
		<-p.recvc
	}
}

// outage computes lost probes and the longest gap from send times and
// answers. A loss at either end of the stream counts up to the first or
// last probe sent.
func outage(sent []time.Duration, got []bool) probeOutage {
	o := probeOutage{sent: len(sent)}
	last := -1 // the last answered probe
	for i, ok := range got {
		if !ok {
			o.lost++
			continue
		}
		from := time.Duration(0)
		if last >= 0 {
			from = sent[last]
		}
		o.gap = max(o.gap, sent[i]-from)
		last = i
	}
	if n := len(sent); n > 0 && last < n-1 {
		from := time.Duration(0)
		if last >= 0 {
			from = sent[last]
		}
		o.gap = max(o.gap, sent[n-1]-from)
	}
	return o
}
