package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/testutil"
)

// failoverTimes are the test's VRRP timings: 100 ms adverts keep every
// election short. The preempt delay keeps a returning lb1 in BACKUP long
// enough to check what it holds there.
var failoverTimes = vrrpTimes{advert: 100 * time.Millisecond, preemptDelay: 1500 * time.Millisecond}

// takeoverSlack is what the test allows beyond the protocol's own
// interval for a takeover, measured between advertisements the client
// saw: timers and packet delivery on a loaded two-core CI machine. It is
// far below the next slower cause (a standby that waits a whole second of
// advert_int, or that never hears the release, takes 3 s or more).
const takeoverSlack = 500 * time.Millisecond

// failoverConns is the number of long-lived connections through the VIP.
const failoverConns = 100

// TestFailoverTwoBalancers runs xlb on lb1 (priority 150) and lb2 (100)
// with one vrrp_instance on the VIP and keeps 100 TCP connections echoing
// through the VIP from the client while
//
//	(a) lb1 dies (its cable pulled, then SIGKILL): lb2 takes over within
//	    Master_Down_Interval of lb1's last advertisement and sends
//	    gratuitous ARP;
//	(c) lb1 comes back: with the VIP its killed predecessor left on eth0,
//	    it must not hold it or answer ARP for it while BACKUP, and it
//	    preempts lb2 once its preempt_delay has passed;
//	(b) lb1 stops gracefully (SIGTERM): lb2 takes over, and a 1 ms UDP
//	    probe stream through the VIP loses nothing;
//	(c) lb1 comes back again and preempts;
//	(d) lb1's daemon alone dies (SIGKILL, link up): its XDP program stays
//	    attached and forwards until lb2's gratuitous ARP moves the client.
//
// Every connection must echo every byte throughout, and no host may count
// a TCP reset.
func TestFailoverTwoBalancers(t *testing.T) {
	topo := newFailoverTopology(t)
	startRealServers(t, topo)
	startUDPEcho(t, topo)
	v := failoverTimes
	conf := func(host string) string { return vrrpInstanceConf(v, lbPriority[host]) + failoverServices() }
	mdi := v.masterDown(lb2Priority)
	vips := watchVIP(t, topo)
	link := watchLink(t, topo)
	hosts := append([]string{testutil.Client}, realServers...)
	resetsBefore := map[string]map[string]int64{}
	for _, h := range hosts {
		resetsBefore[h] = tcpCounters(t, topo, h)
	}

	lb1, lb2 := startPair(t, topo, vips, link, mdi, conf(testutil.LB1), conf(testutil.LB2))
	if got := vips.holders(); !slices.Equal(got, []string{testutil.LB1}) {
		t.Fatalf("with both up the VIP is held by %v, want lb1 only", got)
	}
	if got := lb2.vrrpStates(); !slices.Equal(got, []string{"BACKUP"}) {
		t.Fatalf("lb2 went through states %v, want BACKUP only", got)
	}

	pool := startEchoPool(t, topo, failoverConns)
	pool.progress(t, "the connections opened", 3)

	// (a) Node death: the cable goes first, so no frame reaches lb1 while
	// its kernel, without the XDP program, would answer for the VIP.
	setCable(t, topo, testutil.LB1, false)
	crash := time.Now()
	lb1.kill(t)
	// lb1 keeps the VIP on eth0 where it died.
	vips.waitHolders(t, 10*time.Second, testutil.LB1, testutil.LB2)
	checkTakeover(t, link, "lb1's crash", mdi,
		lastOf(t, link.find("vrrp", testutil.LB1, before(crash)), "advertisement from lb1 before the crash"),
		link.waitEvent(t, 10*time.Second, "vrrp", testutil.LB2, since(crash)))
	link.waitEvent(t, 5*time.Second, "garp", testutil.LB2, since(crash))
	pool.progress(t, "lb1's crash", 5)

	// (c) lb1 returns, first in BACKUP for its preempt_delay.
	setCable(t, topo, testutil.LB1, true)
	restart := time.Now()
	lb1 = startLB(t, topo, testutil.LB1, conf(testutil.LB1))
	checkBackupHoldsNothing(t, topo, lb1, vips, link)
	// From here on only VRRP moves the VIP: the handovers may overlap by
	// no more than an advertisement interval.
	vips.resetBoth()
	vips.waitHolders(t, 10*time.Second, testutil.LB1)
	link.waitEvent(t, 5*time.Second, "garp", testutil.LB1, since(restart))
	if got := lb2.vrrpStates(); !slices.Equal(got, []string{"BACKUP", "MASTER", "BACKUP"}) {
		t.Errorf("lb2 went through states %v, want BACKUP, MASTER, BACKUP", got)
	}
	pool.progress(t, "lb1 preempted lb2", 5)

	// (b) Graceful stop under a probe stream.
	probes := startProber(t, topo)
	probes.waitAnswered(t, 10*time.Second, 200, "probes through lb1")
	stop := time.Now()
	lb1.stop(t)
	vips.waitHolders(t, 10*time.Second, testutil.LB2)
	release := link.waitEvent(t, 5*time.Second, "vrrp", testutil.LB1, func(e l2Event) bool { return e.prio == 0 && !e.at.Before(stop) })
	checkTakeover(t, link, "lb1's graceful stop", mdi, release,
		link.waitEvent(t, 10*time.Second, "vrrp", testutil.LB2, since(stop)))
	link.waitEvent(t, 5*time.Second, "garp", testutil.LB2, since(stop))
	probes.waitAnswered(t, 10*time.Second, 200, "probes through lb2")
	if o := probes.finish(t); o.lost > 0 {
		t.Errorf("graceful stop: %v; want none lost", o)
	} else {
		t.Logf("graceful stop: %v", o)
	}
	pool.progress(t, "lb1's graceful stop", 5)

	// (c) again, from a clean stop.
	restart = time.Now()
	lb1 = startLB(t, topo, testutil.LB1, conf(testutil.LB1))
	vips.waitHolders(t, 10*time.Second, testutil.LB1)
	link.waitEvent(t, 5*time.Second, "garp", testutil.LB1, since(restart))
	pool.progress(t, "lb1 preempted lb2 again", 5)
	if got := lb1.vrrpStates(); !slices.Equal(got, []string{"BACKUP", "MASTER"}) {
		t.Errorf("lb1 went through states %v after its clean restart, want BACKUP, MASTER", got)
	}
	if got := lb2.vrrpStates(); !slices.Equal(got, []string{"BACKUP", "MASTER", "BACKUP", "MASTER", "BACKUP"}) {
		t.Errorf("lb2 went through states %v, want BACKUP, MASTER, BACKUP, MASTER, BACKUP", got)
	}

	both := vips.longestBoth()
	t.Logf("longest time both LBs held the VIP in a handover: %v", both)
	if both > v.advert {
		t.Errorf("both LBs held the VIP for %v in a handover, more than one advertisement interval (%v)", both, v.advert)
	}

	// (d) Only the daemon dies (SIGKILL), the host and its link stay up.
	// The client's ARP cache points at lb1 until lb2's gratuitous ARP, and
	// lb1's kernel still holds the VIP: without the program, which its
	// pinned link keeps attached, it would reset every connection that
	// sent in between.
	crash = time.Now()
	lb1.kill(t)
	link.waitEvent(t, 10*time.Second, "garp", testutil.LB2, since(crash))
	pool.progress(t, "lb1's daemon crashed, its link up", 5)

	for i, err := range pool.stop() {
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
	for _, h := range hosts {
		if diff := cmp.Diff(resetsBefore[h], tcpCounters(t, topo, h)); diff != "" {
			t.Errorf("%s's TCP reset counters moved (-before +after):\n%s", h, diff)
		}
	}
	if drops, err := link.cap.stop(); err != nil || drops > 0 {
		// Only the timings above could suffer (an event seen late), and
		// takeoverSlack covers a missed advertisement.
		t.Logf("capture on the client: %d frames dropped, error %v", drops, err)
	}
}

// checkTakeover checks that the new master's first advertisement came
// within Master_Down_Interval (and takeoverSlack) of the old master's
// last word: its last advertisement, or its priority-0 release.
func checkTakeover(t *testing.T, link *linkLog, what string, mdi time.Duration, last, first l2Event) {
	t.Helper()
	took := first.at.Sub(last.at)
	t.Logf("%s: %s advertised %v after %s's last advertisement (priority %d); Master_Down_Interval %v",
		what, first.src, took.Round(time.Millisecond), last.src, last.prio, mdi)
	if took > mdi+takeoverSlack {
		t.Errorf("%s: the standby took over %v after the master's last advertisement, want within Master_Down_Interval %v (+%v)",
			what, took.Round(time.Millisecond), mdi, takeoverSlack)
	}
}

func lastOf(t *testing.T, events []l2Event, what string) l2Event {
	t.Helper()
	if len(events) == 0 {
		t.Fatalf("the client saw no %s", what)
	}
	return events[len(events)-1]
}

// checkBackupHoldsNothing checks a restarted lb1, still in BACKUP: the
// VIP its killed predecessor left on eth0 is gone, and only lb2 answers
// ARP for it.
func checkBackupHoldsNothing(t *testing.T, topo *testutil.Topology, lb1 *lbDaemon, vips *vipWatch, link *linkLog) {
	t.Helper()
	inBackup := func() {
		t.Helper()
		if got := lb1.vrrpStates(); !slices.Equal(got, []string{"BACKUP"}) {
			t.Fatalf("restarted lb1 went through states %v before the check ran, want BACKUP only (preempt_delay %v too short for this machine?)",
				got, failoverTimes.preemptDelay)
		}
	}
	inBackup()
	holders := vips.holders()
	answered := arpWho(t, topo, link, 100*time.Millisecond)
	inBackup()
	if !slices.Equal(holders, []string{testutil.LB2}) {
		t.Errorf("with lb1 restarted in BACKUP the VIP is held by %v, want lb2 only: the crashed run's address must go", holders)
	}
	if !slices.Equal(answered, []string{testutil.LB2}) {
		t.Errorf("with lb1 restarted in BACKUP, %v answered ARP for the VIP, want lb2 only", answered)
	}
}

// TestFailoverProbeOutage checks how a probe stream's outage is counted:
// lost probes, and the longest stretch between answered ones, including
// losses at either end of the stream.
func TestFailoverProbeOutage(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		sent []time.Duration
		got  []bool
		want probeOutage
	}{
		{"none sent", nil, nil, probeOutage{}},
		{"all answered", ms(1, 2, 3, 4), []bool{true, true, true, true}, probeOutage{sent: 4, gap: time.Millisecond}},
		{"a hole", ms(1, 2, 3, 4, 5, 6), []bool{true, true, false, false, true, true}, probeOutage{sent: 6, lost: 2, gap: 3 * time.Millisecond}},
		{"uneven sending", ms(1, 2, 10, 11), []bool{true, true, true, true}, probeOutage{sent: 4, gap: 8 * time.Millisecond}},
		{"lost at the start", ms(1, 2, 3, 4), []bool{false, false, true, true}, probeOutage{sent: 4, lost: 2, gap: 3 * time.Millisecond}},
		{"lost at the end", ms(1, 2, 3, 4, 5), []bool{true, true, false, false, false}, probeOutage{sent: 5, lost: 3, gap: 3 * time.Millisecond}},
		{"all lost", ms(1, 2, 3), []bool{false, false, false}, probeOutage{sent: 3, lost: 3, gap: 3 * time.Millisecond}},
		{"two holes, the longer counts", ms(1, 2, 3, 4, 5, 6, 7), []bool{true, false, true, false, false, false, true}, probeOutage{sent: 7, lost: 4, gap: 4 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := outage(tt.sent, tt.got)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(probeOutage{})); diff != "" {
				t.Errorf("outage (-want +got):\n%s", diff)
			}
		})
	}
}
