package e2e

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/testutil"
)

// The router is BIRD 2 from Debian's packages (bird2): a BGP
// implementation other than GoBGP, so these tests prove interoperation,
// and the one whose three-way ECMP with L4 hashing was verified on this
// machine kind (docs/design.md, Known ground). It is eBGP: the router in
// AS 65000, the balancers in AS 65001 with equal AS paths, so BIRD's
// kernel protocol merges their routes (merge paths) into one multipath
// route.
const (
	routerAS   = 65000
	balancerAS = 65001
)

var bgpBalancers = []string{testutil.LB1, testutil.LB2, testutil.LB3}

// birdConf is the router's configuration: a session to every balancer
// with the short timers of the tests, ECMP into the kernel, and RFC 8326's
// receiver side: a route carrying GRACEFUL_SHUTDOWN gets local-pref 0, so
// it leaves the multipath route while it is still announced.
func birdConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, `router id %s;
protocol device {}
protocol kernel kern4 { ipv4 { import none; export all; }; merge paths on; }
protocol kernel kern6 { ipv6 { import none; export all; }; merge paths on; }
filter from_balancers {
	if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
	accept;
}
template bgp balancer {
	local as %d;
	passive on;
	hold time 3;
	keepalive time 1;
	# After a hold timer expiry, take a returning balancer back at once
	# rather than after BIRD's default 60 s.
	error wait time 1, 5;
	ipv4 { import filter from_balancers; export none; };
}
template bgp balancer6 {
	local as %d;
	passive on;
	hold time 3;
	keepalive time 1;
	error wait time 1, 5;
	ipv6 { import filter from_balancers; export none; };
}
`, testutil.HostIP4(testutil.Router), routerAS, routerAS)
	for _, lb := range bgpBalancers {
		fmt.Fprintf(&b, "protocol bgp bal_%s from balancer { neighbor %s as %d; }\n", lb, testutil.HostIP4(lb), balancerAS)
		fmt.Fprintf(&b, "protocol bgp bal6_%s from balancer6 { neighbor %s as %d; }\n", lb, testutil.HostIP6(lb), balancerAS)
	}
	return b.String()
}

// startBIRD runs bird in the router's namespace with its config, socket
// and pid file in a temp dir, never the host's; it is killed at cleanup.
func startBIRD(tb testing.TB, topo *testutil.Topology) (socket string) {
	tb.Helper()
	bird, err := exec.LookPath("bird")
	if err != nil {
		tb.Skip("needs bird (Debian package bird2) as the BGP router; make deps installs it")
	}
	dir := tb.TempDir()
	conf := filepath.Join(dir, "bird.conf")
	writeFile(tb, conf, birdConf())
	socket = filepath.Join(dir, "bird.ctl")
	p := topo.Start(tb, testutil.Router, bird, "-f", "-c", conf, "-s", socket, "-P", filepath.Join(dir, "bird.pid"))
	waitFor(tb, 10*time.Second, "bird to open its socket", func() (bool, string) {
		select {
		case <-p.Done():
			tb.Fatalf("bird exited:\n%s", p.Output())
		default:
		}
		_, err := os.Stat(socket)
		return err == nil, p.Output()
	})
	return socket
}

// bgpConf is a balancer's configuration: the TCP and UDP echo services on
// the three real servers, and the TCP one on the IPv6 VIP, announced to
// the router over an IPv4 and an IPv6 session.
func bgpConf(lb string) string {
	var b strings.Builder
	b.WriteString("services:\n")
	for _, proto := range []string{"tcp", "udp"} {
		fmt.Fprintf(&b, "  - vip: %s\n    port: %d\n    protocol: %s\n    backends:\n", testutil.VIP4, echoPort, proto)
		for _, rs := range realServers {
			fmt.Fprintf(&b, "      - address: %s\n", testutil.HostIP4(rs))
		}
	}
	fmt.Fprintf(&b, "  - vip: %s\n    port: %d\n    protocol: tcp\n    backends:\n", testutil.VIP6, echoPort)
	for _, rs := range realServers {
		fmt.Fprintf(&b, "      - address: %s\n", testutil.HostIP6(rs))
	}
	fmt.Fprintf(&b, `bgp:
  local_as: %d
  router_id: %s
  hold_time: 3s
  keepalive_time: 1s
  connect_retry: 1s
  graceful_leave: 1s
  peers:
    - address: %s
      as: %d
    - address: %s
      as: %d
`, balancerAS, testutil.HostIP4(lb), testutil.HostIP4(testutil.Router), routerAS, testutil.HostIP6(testutil.Router), routerAS)
	return b.String()
}

// startBGPLB runs `xlb run` with the bgp configuration on host (see
// startLB).
func startBGPLB(tb testing.TB, topo *testutil.Topology, host string) *lbDaemon {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "xlb.yaml")
	writeFile(tb, path, bgpConf(host))
	pins, run := dirsOf(tb, topo, host)
	d := &lbDaemon{host: host, daemon: &daemon{
		topo: topo, bin: testutil.BuildBinary(tb, "./cmd/xlb"), conf: path,
		socket: filepath.Join(run, "xlb.sock"), pins: pins,
	}}
	d.proc = topo.StartNet(tb, host, d.bin, "run", "-f", path, "-i", "eth0",
		"--xdp-mode", "native", "--bpffs", d.pins, "--socket", d.socket)
	tb.Cleanup(func() {
		if err := d.proc.Stop(); err != nil && !d.killed.Load() {
			tb.Errorf("xlb run in %s did not exit cleanly on SIGTERM: %v\n%s", host, err, d.proc.Output())
		}
	})
	d.waitServing(tb, "xlb run in "+host)
	return d
}

// nextHops returns the balancers the router's kernel route to the VIP
// goes through.
func nextHops(tb testing.TB, topo *testutil.Topology) []string {
	tb.Helper()
	return routeHops(tb, topo, false)
}

// routeHops returns the balancers the router's route to the IPv4 or the
// IPv6 VIP goes through.
func routeHops(tb testing.TB, topo *testutil.Topology, v6 bool) []string {
	tb.Helper()
	args := []string{"ip", "route", "show", testutil.VIP4.String() + "/32"}
	if v6 {
		args = []string{"ip", "-6", "route", "show", testutil.VIP6.String() + "/128"}
	}
	out, err := topo.Command(testutil.Router, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip route in the router: %v\n%s", err, out)
	}
	var hops []string
	for _, lb := range bgpBalancers {
		addr := testutil.HostIP4(lb).String()
		if v6 {
			addr = testutil.HostIP6(lb).String()
		}
		if strings.Contains(string(out), "via "+addr+" ") {
			hops = append(hops, lb)
		}
	}
	return hops
}

func waitNextHops(tb testing.TB, topo *testutil.Topology, timeout time.Duration, want ...string) {
	tb.Helper()
	waitFor(tb, timeout, fmt.Sprintf("the router's route to the VIP via %v", want), func() (bool, string) {
		got := nextHops(tb, topo)
		return strings.Join(got, ",") == strings.Join(want, ","), fmt.Sprintf("via %v", got)
	})
}

// inPackets is the packets lb forwarded for the echo service.
func inPackets(tb testing.TB, d *lbDaemon) uint64 {
	tb.Helper()
	st := d.mustState(tb)
	var s *api.Service
	for i := range st.Services {
		if st.Services[i].Port == echoPort && st.Services[i].Proto == "TCP" && st.Services[i].Addr == testutil.VIP4.String() {
			s = &st.Services[i]
		}
	}
	if s == nil {
		tb.Fatalf("%s serves no echo service", d.host)
	}
	return s.Stats.InPkts
}

// TestBGPECMP: three balancers announce the VIP to a BIRD router, which
// installs a three-way ECMP route hashing on L4; 100 long-lived echo
// connections through it reach all three balancers and survive, every
// byte echoed, (a) a graceful stop of one balancer (GRACEFUL_SHUTDOWN,
// then withdrawal), (b) its return (and xlb drain-bgp of another, and
// its undo), (c) SIGKILL of another with its link down, which the
// router notices at the hold time (3 s), and a reload that removes the
// IPv6 VIP from one balancer (a graceful leave of that VIP only).
func TestBGPECMP(t *testing.T) {
	testutil.RequireRoot(t, "builds the namespace topology, runs BIRD and attaches XDP")
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("needs bird (Debian package bird2) as the BGP router; make deps installs it")
	}
	obj := filepath.Join(testutil.MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o")
	topo := testutil.NewTopology(t, testutil.TopologyOptions{XDPPassObj: obj, Router: true})
	startRealServers(t, topo)
	startBIRD(t, topo)
	lbs := map[string]*lbDaemon{}
	for _, lb := range bgpBalancers {
		lbs[lb] = startBGPLB(t, topo, lb)
	}
	waitNextHops(t, topo, 20*time.Second, bgpBalancers...)
	if out := lbs[testutil.LB1].xlb(t, "bgp"); !strings.Contains(out, "ESTABLISHED") || !strings.Contains(out, "announced") {
		t.Errorf("xlb bgp on lb1 shows no established session or announced VIP:\n%s", out)
	}

	digests := map[string]bool{}
	for _, lb := range bgpBalancers {
		if b := lbs[lb].mustState(t).BGP; b != nil {
			digests[b.Digest] = true
		}
	}
	if len(digests) != 1 {
		t.Errorf("the balancers show %d different table digests, want one: %v", len(digests), digests)
	}

	// IPv6: the VIP over the IPv6 sessions, three ways too, and
	// connections through it.
	waitFor(t, 20*time.Second, "the router's IPv6 route to the VIP via every balancer", func() (bool, string) {
		got := routeHops(t, topo, true)
		return len(got) == len(bgpBalancers), fmt.Sprintf("via %v", got)
	})
	for i := range 20 {
		c, err := dial(topo, testutil.Client, netip.AddrPortFrom(testutil.VIP6, echoPort))
		if err != nil {
			t.Fatalf("IPv6 connection %d to the VIP: %v", i, err)
		}
		msg := []byte("ping over IPv6")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("IPv6 connection %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatalf("IPv6 connection %d: no echo: %v", i, err)
		}
		c.Close()
	}

	pool := startEchoPool(t, topo, 100)
	pool.progress(t, "the start", 5)
	for _, lb := range bgpBalancers {
		if n := inPackets(t, lbs[lb]); n == 0 {
			t.Errorf("%s forwarded no packet: the router's ECMP did not spread the connections", lb)
		}
	}

	// (a) A graceful stop: the router moves lb1's flows to lb2 and lb3,
	// which pick the same real servers, before lb1 withdraws and stops.
	lbs[testutil.LB1].stop(t)
	if out := lbs[testutil.LB1].proc.Output(); !strings.Contains(out, "bgp: leaving") || !strings.Contains(out, "bgp: withdrawn") {
		t.Errorf("lb1 did not leave with GRACEFUL_SHUTDOWN before withdrawing:\n%s", out)
	}
	waitNextHops(t, topo, 5*time.Second, testutil.LB2, testutil.LB3)
	pool.progress(t, "lb1's graceful stop", 10)

	// (b) lb1 returns; the router spreads over three again.
	lbs[testutil.LB1] = startBGPLB(t, topo, testutil.LB1)
	waitNextHops(t, topo, 20*time.Second, bgpBalancers...)
	pool.progress(t, "lb1's return", 10)
	if n := inPackets(t, lbs[testutil.LB1]); n == 0 {
		t.Errorf("lb1 forwarded no packet after its return")
	}

	// xlb drain-bgp takes lb3 out gracefully and --undo brings it back.
	lbs[testutil.LB3].xlb(t, "drain-bgp")
	waitNextHops(t, topo, 5*time.Second, testutil.LB1, testutil.LB2)
	pool.progress(t, "lb3's drain", 5)
	lbs[testutil.LB3].xlb(t, "drain-bgp", "--undo")
	waitNextHops(t, topo, 5*time.Second, bgpBalancers...)
	pool.progress(t, "lb3's return from its drain", 5)

	// (c) lb2 dies with its link: the router keeps the path until the
	// hold time; TCP retransmits across the gap.
	lbs[testutil.LB2].kill(t)
	setCable(t, topo, testutil.LB2, false)
	waitNextHops(t, topo, 10*time.Second, testutil.LB1, testutil.LB3)
	pool.progress(t, "lb2's crash", 10)

	// A reload that removes the IPv6 service: lb1 leaves that VIP
	// gracefully and keeps the IPv4 one.
	conf := bgpConf(testutil.LB1)
	cut, rest := strings.Index(conf, "  - vip: "+testutil.VIP6.String()), strings.Index(conf, "bgp:")
	writeFile(t, lbs[testutil.LB1].conf, conf[:cut]+conf[rest:])
	lbs[testutil.LB1].xlb(t, "reload")
	waitFor(t, 10*time.Second, "the router's IPv6 route to leave lb1", func() (bool, string) {
		got := routeHops(t, topo, true)
		return strings.Join(got, ",") == testutil.LB3, fmt.Sprintf("via %v", got)
	})
	if out := lbs[testutil.LB1].proc.Output(); !strings.Contains(out, "leaving: no service has this VIP any more") {
		t.Errorf("lb1 did not leave the removed VIP gracefully:\n%s", out)
	}
	waitNextHops(t, topo, 5*time.Second, testutil.LB1, testutil.LB3)
	pool.progress(t, "lb1's reload", 5)

	broken := 0
	for i, err := range pool.stop() {
		if err != nil {
			broken++
			t.Errorf("connection %d: %v", i, err)
		}
	}
	t.Logf("100 connections through a graceful stop, a return and a crash: %d broken", broken)
}

// BenchmarkBGPFailover measures what a client sees when the balancer that
// carries its flow leaves an ECMP group: a UDP probe every millisecond
// through the router and the VIP (one 5-tuple, so one balancer), while
// that balancer stops gracefully (GRACEFUL_SHUTDOWN, graceful_leave 1 s,
// withdrawal) or crashes with its link down (the router drops the path at
// the hold time, 3 s). BenchmarkFailover gives the VRRP figures of the
// same events in the same run.
func BenchmarkBGPFailover(b *testing.B) {
	testutil.RequireRoot(b, "builds the namespace topology, runs BIRD and attaches XDP")
	if _, err := exec.LookPath("bird"); err != nil {
		b.Skip("needs bird (Debian package bird2) as the BGP router; make deps installs it")
	}
	obj := filepath.Join(testutil.MustRepoRoot(b), "internal", "datapath", "xdppass_bpfel.o")
	topo := testutil.NewTopology(b, testutil.TopologyOptions{XDPPassObj: obj, Router: true})
	startUDPEcho(b, topo)
	startBIRD(b, topo)
	lbs := map[string]*lbDaemon{}
	for _, lb := range bgpBalancers {
		lbs[lb] = startBGPLB(b, topo, lb)
	}
	waitNextHops(b, topo, 20*time.Second, bgpBalancers...)
	parent := b
	for _, ev := range []failoverEvent{eventGraceful, eventCrash} {
		b.Run(string(ev), func(b *testing.B) {
			var total probeOutage
			for range b.N {
				o := bgpFailoverRun(b, parent, topo, lbs, ev)
				b.Logf("bgp %s: %v", ev, o)
				total.lost += o.lost
				total.gap += o.gap
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(total.lost)/n, "bgp-lost-probes")
			b.ReportMetric(float64(total.gap.Microseconds())/1000/n, "bgp-gap-ms")
		})
	}
}

// udpPackets is the packets lb forwarded for the UDP probe service.
func udpPackets(tb testing.TB, d *lbDaemon) uint64 {
	tb.Helper()
	for _, s := range d.mustState(tb).Services {
		if s.Proto == "UDP" {
			return s.Stats.InPkts
		}
	}
	return 0
}

// bgpFailoverRun finds the balancer that carries the probe stream, makes
// ev happen to it, waits until the stream flows again, and brings the
// balancer back, as a daemon of parent (the whole benchmark's).
func bgpFailoverRun(b, parent *testing.B, topo *testutil.Topology, lbs map[string]*lbDaemon, ev failoverEvent) probeOutage {
	b.Helper()
	before := map[string]uint64{}
	for _, lb := range bgpBalancers {
		before[lb] = udpPackets(b, lbs[lb])
	}
	probes := startProber(b, topo)
	probes.waitAnswered(b, 10*time.Second, probeSettle, "probes through the router")
	carrier := ""
	for _, lb := range bgpBalancers {
		if udpPackets(b, lbs[lb]) > before[lb]+probeSettle/2 {
			carrier = lb
		}
	}
	if carrier == "" {
		b.Fatal("no balancer carries the probe stream")
	}
	switch ev {
	case eventGraceful:
		lbs[carrier].stop(b)
	case eventCrash:
		setCable(b, topo, carrier, false)
		lbs[carrier].kill(b)
	}
	probes.waitAnswered(b, 20*time.Second, probeSettle, "probes after "+carrier+" left")
	o := probes.finish(b)
	if ev == eventCrash {
		setCable(b, topo, carrier, true)
	}
	lbs[carrier] = startBGPLB(parent, topo, carrier)
	waitNextHops(b, topo, 20*time.Second, bgpBalancers...)
	return o
}

// drainConf is bgpConf with health checks: every real server checked on
// its HTTP port (so that pausing rsserver's listeners fails the check while
// its echo connections carry on), kept at weight 0 when failed
// (inhibit_on_failure), and down until its first check passes (alpha), so
// that a balancer that starts while a server fails never serves it.
func drainConf(lb string) string {
	conf := bgpConf(lb)
	i := strings.Index(conf, "bgp:")
	var b strings.Builder
	fmt.Fprintf(&b, "services:\n  - vip: %s\n    port: %d\n    protocol: tcp\n    delay_loop: 1s\n    backends:\n", testutil.VIP4, echoPort)
	for _, rs := range realServers {
		fmt.Fprintf(&b, "      - address: %s\n        inhibit_on_failure: true\n        checks:\n          - type: tcp\n            connect_port: %d\n            connect_timeout: 1s\n            retry: 0\n            alpha: true\n",
			testutil.HostIP4(rs), httpPort)
	}
	return b.String() + conf[i:]
}

// rsWeight is rs's weight in d's echo service.
func rsWeight(tb testing.TB, d *lbDaemon, rs string) (uint32, bool) {
	tb.Helper()
	st, err := d.state()
	if err != nil {
		return 0, false
	}
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if b.Addr == testutil.HostIP4(rs).String() {
				return b.Weight, true
			}
		}
	}
	return 0, false
}

// TestBGPJoinWhileDrained is case (d): lb1 and lb2 serve 100 long-lived
// connections; rs1 fails its check and is drained (weight 0,
// inhibit_on_failure), its established connections carrying on through
// the flow entries of lb1 and lb2; then lb3 joins, and the router moves
// about a third of the flows to it. lb3 has no flow entry for them, and
// its table, built with rs1 at weight 0, sends the moved rs1 connections'
// packets to another real server, which resets them. The test states how
// many break; connections on rs2 and rs3 must all survive. Designs that
// would keep the rs1 ones: Beamer's daisy chaining (a non-SYN packet
// without a flow entry is looked up in the table from before the drain,
// and the real server's answer tells which one holds it), or flow-entry
// sync between balancers as IPVS's sync daemon does.
func TestBGPJoinWhileDrained(t *testing.T) {
	testutil.RequireRoot(t, "builds the namespace topology, runs BIRD and attaches XDP")
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("needs bird (Debian package bird2) as the BGP router; make deps installs it")
	}
	obj := filepath.Join(testutil.MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o")
	topo := testutil.NewTopology(t, testutil.TopologyOptions{XDPPassObj: obj, Router: true})
	rsProcs := startRealServers(t, topo)
	startBIRD(t, topo)
	start := func(lb string) *lbDaemon {
		path := filepath.Join(t.TempDir(), "xlb.yaml")
		writeFile(t, path, drainConf(lb))
		pins, run := dirsOf(t, topo, lb)
		d := &lbDaemon{host: lb, daemon: &daemon{topo: topo, bin: testutil.BuildBinary(t, "./cmd/xlb"), conf: path,
			socket: filepath.Join(run, "xlb.sock"), pins: pins}}
		d.proc = topo.StartNet(t, lb, d.bin, "run", "-f", path, "-i", "eth0", "--xdp-mode", "native", "--bpffs", d.pins, "--socket", d.socket)
		t.Cleanup(func() {
			if err := d.proc.Stop(); err != nil {
				t.Errorf("xlb run in %s did not exit cleanly on SIGTERM: %v\n%s", lb, err, d.proc.Output())
			}
		})
		d.waitServing(t, "xlb run in "+lb)
		return d
	}
	lb1, lb2 := start(testutil.LB1), start(testutil.LB2)
	waitNextHops(t, topo, 20*time.Second, testutil.LB1, testutil.LB2)
	for _, d := range []*lbDaemon{lb1, lb2} {
		waitFor(t, 10*time.Second, d.host+" to serve rs1", func() (bool, string) {
			w, _ := rsWeight(t, d, testutil.RS1)
			return w == 1, fmt.Sprintf("weight %d", w)
		})
	}
	pool := startEchoPool(t, topo, 100)
	pool.progress(t, "the start", 5)
	placement := healthEchoPlacement(t, topo, healthConnsOf(pool.conns))

	healthToggle(t, rsProcs[testutil.RS1], testutil.RS1, false)
	for _, d := range []*lbDaemon{lb1, lb2} {
		waitFor(t, 10*time.Second, d.host+" to drain rs1", func() (bool, string) {
			w, ok := rsWeight(t, d, testutil.RS1)
			return ok && w == 0, fmt.Sprintf("weight %d", w)
		})
	}
	pool.progress(t, "rs1's drain", 5)

	lb3 := start(testutil.LB3)
	if w, _ := rsWeight(t, lb3, testutil.RS1); w != 0 {
		t.Errorf("lb3 serves the failed rs1 at weight %d", w)
	}
	waitNextHops(t, topo, 20*time.Second, bgpBalancers...)
	// Long enough for every connection to send a few rounds through
	// whichever balancer the router now picks.
	time.Sleep(2 * time.Second)

	broken := map[string]int{}
	total := map[string]int{}
	for i, err := range pool.stop() {
		total[placement[i]]++
		if err != nil {
			broken[placement[i]]++
			t.Logf("connection %d on %s: %v", i, placement[i], err)
		}
	}
	for _, rs := range []string{testutil.RS2, testutil.RS3} {
		if broken[rs] > 0 {
			t.Errorf("%d of %d connections on %s broke: only the drained rs1's may", broken[rs], total[rs], rs)
		}
	}
	t.Logf("lb3 joined while rs1 was drained: %d of %d connections on rs1 broke (moved to lb3, which has no flow entry for them); %d of %d on rs2 and rs3",
		broken[testutil.RS1], total[testutil.RS1], broken[testutil.RS2]+broken[testutil.RS3], total[testutil.RS2]+total[testutil.RS3])
}

// BenchmarkBGPWithdraw measures how long after a service loses its last
// real server the router's route through the balancer goes (withdrawal),
// and how long after one comes back it returns (announcement): from the
// daemon's own "backend down"/"backend up" log line to the change in the
// router's kernel table, polled every 10 ms (an upper bound; the log's
// millisecond stamps and the poll make the figure good to some 20 ms).
// Health detection itself is BenchmarkHealth's.
func BenchmarkBGPWithdraw(b *testing.B) {
	testutil.RequireRoot(b, "builds the namespace topology, runs BIRD and attaches XDP")
	if _, err := exec.LookPath("bird"); err != nil {
		b.Skip("needs bird (Debian package bird2) as the BGP router; make deps installs it")
	}
	obj := filepath.Join(testutil.MustRepoRoot(b), "internal", "datapath", "xdppass_bpfel.o")
	topo := testutil.NewTopology(b, testutil.TopologyOptions{XDPPassObj: obj, Router: true})
	rsProcs := startRealServers(b, topo)
	startBIRD(b, topo)
	path := filepath.Join(b.TempDir(), "xlb.yaml")
	writeFile(b, path, drainConf(testutil.LB1))
	pins, run := dirsOf(b, topo, testutil.LB1)
	d := &lbDaemon{host: testutil.LB1, daemon: &daemon{topo: topo, bin: testutil.BuildBinary(b, "./cmd/xlb"), conf: path,
		socket: filepath.Join(run, "xlb.sock"), pins: pins}}
	d.proc = topo.StartNet(b, testutil.LB1, d.bin, "run", "-f", path, "-i", "eth0", "--xdp-mode", "native", "--bpffs", d.pins, "--socket", d.socket)
	b.Cleanup(func() { _ = d.proc.Stop() })
	d.waitServing(b, "xlb run in lb1")
	var withdraw, announce time.Duration
	for range b.N {
		waitNextHops(b, topo, 20*time.Second, testutil.LB1)
		// The withdrawal follows the last real server down, the
		// announcement the first one up.
		downs := strings.Count(d.proc.Output(), `level=INFO msg="backend down"`)
		for _, rs := range realServers {
			healthToggle(b, rsProcs[rs], rs, false)
		}
		gone := pollNextHops(b, topo, false)
		withdraw += gone.Sub(nthLogTime(b, d.proc.Output(), `level=INFO msg="backend down"`, downs+len(realServers)))
		ups := strings.Count(d.proc.Output(), `level=INFO msg="backend up"`)
		for _, rs := range realServers {
			healthToggle(b, rsProcs[rs], rs, true)
		}
		back := pollNextHops(b, topo, true)
		announce += back.Sub(nthLogTime(b, d.proc.Output(), `level=INFO msg="backend up"`, ups+1))
		for _, rs := range realServers {
			waitFor(b, 10*time.Second, rs+" to be up again", func() (bool, string) {
				w, _ := rsWeight(b, d, rs)
				return w == 1, fmt.Sprintf("weight %d", w)
			})
		}
	}
	n := time.Duration(b.N)
	b.Logf("withdrawal %v, announcement %v after the daemon saw the change", withdraw/n, announce/n)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64((withdraw/n).Microseconds())/1000, "withdraw-ms")
	b.ReportMetric(float64((announce/n).Microseconds())/1000, "announce-ms")
}

// pollNextHops polls the router's route every 10 ms until it goes through
// lb1 (present) or not, and returns when it first saw that: the time after
// the `ip route` that saw it returned, so the figure is an upper bound
// (by the poll interval and one `ip route`, some 10-20 ms).
func pollNextHops(tb testing.TB, topo *testutil.Topology, present bool) time.Time {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		hops := nextHops(tb, topo)
		at := time.Now()
		if (len(hops) > 0) == present {
			return at
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("the router's route via lb1 is not %v after 30 s", map[bool]string{true: "back", false: "gone"}[present])
	return time.Time{}
}

// nthLogTime is the time of the nth (from 1) line of out that contains
// what.
func nthLogTime(tb testing.TB, out, what string, nth int) time.Time {
	tb.Helper()
	lines := strings.Split(out, "\n")
	for i := range lines {
		if !strings.Contains(lines[i], what) {
			continue
		}
		if nth--; nth > 0 {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimSpace(lines[i]), " ")
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f, "time="))
		if err != nil {
			tb.Fatalf("log line %q: %v", lines[i], err)
		}
		return at
	}
	tb.Fatalf("fewer log lines with %s than asked for:\n%s", what, out)
	return time.Time{}
}
