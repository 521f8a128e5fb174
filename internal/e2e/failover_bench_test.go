package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// BenchmarkFailover measures what a client sees of a failover: a UDP
// probe every millisecond through the VIP, answered by udpecho on the real
// servers, counts the probes lost and the longest gap between answered
// ones while the master LB (lb1) crashes or stops gracefully and lb2 takes
// over, at advert_int 1 s and 100 ms.
//
// Each case runs twice on the same topology and settings (VRRPv3, lb1 at
// priority 150, lb2 at 100, preempt): once with xlb doing everything, and
// once with keepalived doing VRRP and the VIP. The kernel here has no
// ip_vs, so keepalived's LVS-DR cannot forward; xlb's data path, started
// without a vrrp_instance, forwards on both LBs instead. That isolates
// what differs, the VRRP takeover and the release of the VIP, and is how
// a keepalived user would run xlb's data path during a migration.
//
//   - crash: lb1's cable is pulled, then every process on lb1 is killed.
//     (keepalived sees the link go first and drops to FAULT, but nothing
//     it sends then reaches the link, so the two sides are alike.)
//   - graceful: SIGTERM to lb1's xlb; on the keepalived side to keepalived
//     and the forwarder together, since keepalived removes its IPVS
//     services when it stops and an LVS director then forwards nothing.
//
// Metrics per case are the mean over b.N runs of each side's lost probes
// and longest gap, and xlb/keepalived ratios of both (when keepalived's
// figure is not zero).
func BenchmarkFailover(b *testing.B) {
	testutil.RequireRoot(b, "builds the namespace topology and attaches XDP")
	kbin, err := exec.LookPath("keepalived")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/keepalived"); err != nil {
			b.Skip("keepalived is not installed (Debian package keepalived)")
		}
		kbin = "/usr/sbin/keepalived"
	}
	topo := newFailoverTopology(b)
	startUDPEcho(b, topo)
	for _, advert := range []time.Duration{time.Second, 100 * time.Millisecond} {
		for _, ev := range []failoverEvent{eventCrash, eventGraceful} {
			b.Run(fmt.Sprintf("advert=%v/%s", advert, ev), func(b *testing.B) {
				v := vrrpTimes{advert: advert}
				var x, k probeOutage
				for range b.N {
					xo := failoverRun(b, topo, v, ev, "")
					ko := failoverRun(b, topo, v, ev, kbin)
					b.Logf("xlb: %v; keepalived: %v", xo, ko)
					x.lost += xo.lost
					x.gap += xo.gap
					k.lost += ko.lost
					k.gap += ko.gap
				}
				n := float64(b.N)
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(float64(x.lost)/n, "xlb-lost-probes")
				b.ReportMetric(float64(k.lost)/n, "keepalived-lost-probes")
				b.ReportMetric(float64(x.gap.Microseconds())/1000/n, "xlb-gap-ms")
				b.ReportMetric(float64(k.gap.Microseconds())/1000/n, "keepalived-gap-ms")
				if k.lost > 0 {
					b.ReportMetric(float64(x.lost)/float64(k.lost), "xlb/keepalived-lost")
				}
				if k.gap > 0 {
					b.ReportMetric(float64(x.gap)/float64(k.gap), "xlb/keepalived-gap")
				}
			})
		}
	}
}

// failoverEvent is what happens to the master.
type failoverEvent string

const (
	eventCrash    failoverEvent = "crash"
	eventGraceful failoverEvent = "graceful"
)

// probeSettle is how many answered probes make a stream steady: before
// the event, and again after the takeover.
const probeSettle = 300

// failoverRun runs one failover of lb1 to lb2 under a probe stream and
// returns what the stream saw. With kbin empty xlb runs VRRP; otherwise
// keepalived (kbin) does, beside xlb forwarders. Everything it starts is
// gone when it returns, and the VIP is on neither LB.
func failoverRun(b *testing.B, topo *testutil.Topology, v vrrpTimes, ev failoverEvent, kbin string) probeOutage {
	b.Helper()
	vips := watchVIP(b, topo)
	link := watchLink(b, topo)
	var lbs []*lbDaemon
	defer func() {
		for _, d := range lbs {
			d.killed.Store(true)
		}
		resetLBs(b, topo)
	}()
	for _, host := range []string{testutil.LB1, testutil.LB2} {
		vrrp := vrrpInstanceConf(v, lbPriority[host])
		if kbin == "" {
			lbs = append(lbs, startLB(b, topo, host, vrrp+failoverServices()))
			continue
		}
		lbs = append(lbs, startLB(b, topo, host, failoverServices()))
		conf := filepath.Join(b.TempDir(), "keepalived.conf")
		writeFile(b, conf, vrrp)
		dir := filepath.Dir(conf)
		topo.Start(b, host, kbin, "-n", "-l", "-D", "-P", "-f", conf,
			"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"), "-c", filepath.Join(dir, "checkers.pid"))
	}
	// Started together, both wait a Master_Down_Interval; lb1's is the
	// shorter, and lb2 then hears it.
	vips.waitHolders(b, 3*v.masterDown(lb2Priority)+10*time.Second, testutil.LB1)

	probes := startProber(b, topo)
	probes.waitAnswered(b, 10*time.Second, probeSettle, "probes through lb1")
	switch ev {
	case eventCrash:
		// Right after an advertisement, so that lb2 waits out a whole
		// Master_Down_Interval on both sides rather than whatever part
		// of one was left: the comparison is then not a draw of phases.
		link.awaitNext(b, 2*v.advert+5*time.Second, "vrrp", testutil.LB1)
		setCable(b, topo, testutil.LB1, false)
		killHost(b, topo, testutil.LB1)
	case eventGraceful:
		stopHost(b, topo, testutil.LB1)
	}
	// A killed lb1 may keep its copy of the VIP (keepalived drops it
	// when it sees the link go, xlb does not look).
	vips.waitHeldBy(b, 3*v.masterDown(lb2Priority)+10*time.Second, testutil.LB2)
	probes.waitAnswered(b, 3*v.masterDown(lb2Priority)+10*time.Second, probeSettle, "probes through lb2")
	return probes.finish(b)
}

// hostPids returns the processes in host's network namespace, not
// counting this one (whose threads visit namespaces).
func hostPids(tb testing.TB, topo *testutil.Topology, host string) []int {
	tb.Helper()
	out, err := exec.Command("ip", "netns", "pids", topo.NS(host)).Output()
	if err != nil {
		tb.Fatalf("ip netns pids %s: %v", topo.NS(host), err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			tb.Fatalf("ip netns pids %s: %q is not a pid", topo.NS(host), f)
		}
		if pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killHost kills every process on host with SIGKILL in one sweep, so
// that none has time to act on another's death (keepalived's VRRP child
// would stop gracefully, priority 0 and all, when its parent goes).
func killHost(tb testing.TB, topo *testutil.Topology, host string) {
	tb.Helper()
	signalHost(tb, topo, host, syscall.SIGKILL)
}

// stopHost sends SIGTERM to every process on host and waits for them to
// exit.
func stopHost(tb testing.TB, topo *testutil.Topology, host string) {
	tb.Helper()
	signalHost(tb, topo, host, syscall.SIGTERM)
}

func signalHost(tb testing.TB, topo *testutil.Topology, host string, sig syscall.Signal) {
	tb.Helper()
	pids := hostPids(tb, topo, host)
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
			tb.Fatalf("signal %v to pid %d in %s: %v", sig, pid, host, err)
		}
	}
	waitFor(tb, 30*time.Second, fmt.Sprintf("the processes in %s to exit on %v", host, sig), func() (bool, string) {
		left := slices.DeleteFunc(hostPids(tb, topo, host), func(pid int) bool {
			// A zombie is gone as far as the network can tell; its
			// parent's Wait reaps it.
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return err != nil || strings.Contains(string(st), ") Z ")
		})
		return len(left) == 0, fmt.Sprintf("pids %v left", left)
	})
}

// resetLBs ends a run: every process on the LBs killed (a graceful stop
// of a master with no peer would wait out a Master_Down_Interval), the
// cables in, no VIP left on either LB, and the client's neighbour entry
// for the VIP forgotten.
func resetLBs(tb testing.TB, topo *testutil.Topology) {
	tb.Helper()
	for _, host := range []string{testutil.LB1, testutil.LB2} {
		killHost(tb, topo, host)
		setCable(tb, topo, host, true)
		// The address may be gone already; only its absence matters.
		_ = exec.Command("ip", "-n", topo.NS(host), "addr", "del", testutil.VIP4.String()+"/32", "dev", "eth0").Run()
	}
	_ = exec.Command("ip", "-n", topo.NS(testutil.Client), "neigh", "flush", "to", testutil.VIP4.String(), "dev", "eth0").Run()
}
