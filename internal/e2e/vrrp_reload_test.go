package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/testutil"
)

// vip2 is the address of the second virtual router the reload test adds,
// vip3 one it adds to the first for a while.
var (
	vip2 = netip.MustParseAddr("192.0.2.20")
	vip3 = netip.MustParseAddr("192.0.2.21")
)

// vi2Priority tells lb1's second virtual router's advertisements from
// its first's on the link.
const vi2Priority = 77

// TestVRRPReload changes lb1's VRRP settings with `xlb reload` while lb2
// stands by, as keepalived applies them on SIGHUP. A 1 ms UDP probe
// stream runs through the VIP throughout and must lose nothing, and the
// VIP must be on one LB or the other at every poll.
//
//	(a) lb1's priority rises: lb1 stays master without a gap in its
//	    advertisements, now at the new priority, and lb2 never leaves
//	    BACKUP;
//	(a2) lb1's VIP list grows, then shrinks back: lb1 holds and then
//	    drops the added VIP, and lb2, whose list now differs from lb1's
//	    adverts, stays BACKUP thanks to vrrp_skip_check_adv_addr;
//	(b) a second vrrp_instance is added: it takes its VIP, the first
//	    instance stays as it was;
//	(c) a reload whose VRRP part cannot start (an insecure notify
//	    script) is refused with the reason and changes nothing;
//	(d) lb1's priority drops below lb2's: lb2 preempts it;
//	(e) the second instance is removed: its VIP leaves lb1.
//
// `xlb vrrp` on both LBs shows each step's states and priorities.
func TestVRRPReload(t *testing.T) {
	topo := newFailoverTopology(t)
	startRealServers(t, topo)
	startUDPEcho(t, topo)
	v := failoverTimes
	v.preemptDelay = 0
	mdi := v.masterDown(lb2Priority)
	vips := watchVIP(t, topo)
	link := watchLink(t, topo)

	// Both skip the address check of their master's advertisements, so
	// that a VIP list reloaded on one balancer first does not split them.
	skip := func(conf string) string {
		return strings.Replace(conf, "    vrrp_version 3\n", "    vrrp_version 3\n    vrrp_skip_check_adv_addr\n", 1)
	}
	lb1Conf := func(prio int, second bool, extra string) string {
		c := strings.Replace(skip(vrrpInstanceConf(v, prio)), "    preempt\n", "    preempt\n"+extra, 1)
		if second {
			c += fmt.Sprintf("vrrp_instance VI_2 {\n    interface eth0\n    virtual_router_id %d\n    priority %d\n    advert_int %s\n    virtual_ipaddress {\n        %s/32 dev eth0\n    }\n}\n",
				failoverVRID+1, vi2Priority, seconds(v.advert), vip2)
		}
		return c + failoverServices()
	}
	lb1, lb2 := startPair(t, topo, vips, link, mdi, lb1Conf(lb1Priority, false, ""), skip(vrrpInstanceConf(v, lb2Priority))+failoverServices())
	probes := startProber(t, topo)
	probes.waitAnswered(t, 10*time.Second, 200, "probes through lb1")

	reload := func(t *testing.T, conf string) time.Time {
		t.Helper()
		writeFile(t, lb1.conf, conf)
		at := time.Now()
		if out := lb1.xlb(t, "reload"); strings.TrimSpace(out) != "reloaded" {
			t.Fatalf("xlb reload printed %q, want \"reloaded\"", out)
		}
		return at
	}
	hasVIP2 := func() bool { return holds(t, topo, testutil.LB1, vip2) }
	// wantVRRP checks `xlb vrrp` on d: each instance's state and
	// effective priority, as "VI_1 MASTER 200".
	wantVRRP := func(t *testing.T, d *lbDaemon, want ...string) {
		t.Helper()
		var got []api.VRRPInstance
		if err := json.Unmarshal([]byte(d.xlb(t, "vrrp", "--json")), &got); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, in := range got {
			lines = append(lines, fmt.Sprintf("%s %s %d", in.Name, in.State, in.Priority))
			if in.State == "MASTER" && in.Sent == 0 || in.State == "BACKUP" && in.Received == 0 {
				t.Errorf("xlb vrrp on %s: %s %s sent %d and received %d advertisements", d.host, in.Name, in.State, in.Sent, in.Received)
			}
		}
		if !slices.Equal(lines, want) {
			t.Errorf("xlb vrrp on %s: %q, want %q", d.host, lines, want)
		}
	}

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{{"a: priority rises, lb1 stays master", func(t *testing.T) {
		at := reload(t, lb1Conf(200, false, ""))
		first := link.waitEvent(t, 5*time.Second, "vrrp", testutil.LB1, func(e l2Event) bool { return e.prio == 200 })
		last := lastOf(t, link.find("vrrp", testutil.LB1, func(e l2Event) bool { return e.prio == lb1Priority }), "advertisement at the old priority")
		// The successor advertises at once; a gap of more than an
		// interval would be a restart, not a handover.
		if gap := first.at.Sub(last.at); gap > v.advert+takeoverSlack {
			t.Errorf("advertisements paused for %v across the reload (interval %v)", gap, v.advert)
		}
		if !first.at.After(at) {
			t.Errorf("priority 200 advertised before the reload")
		}
		time.Sleep(2 * mdi)
		if !strings.Contains(lb1.proc.Output(), `msg="handed over for a reload"`) {
			t.Errorf("lb1 did not log the handover:\n%s", lb1.proc.Output())
		}
		wantVRRP(t, lb1, "VI_1 MASTER 200")
		wantVRRP(t, lb2, "VI_1 BACKUP 100")
		if out := lb1.xlb(t, "vrrp"); !strings.HasPrefix(out, "Instance  Interface  VRID  State   Priority") {
			t.Errorf("xlb vrrp printed:\n%s", out)
		}
	}}, {"a2: the VIP list grows on lb1 alone, and shrinks back", func(t *testing.T) {
		grown := strings.Replace(lb1Conf(200, false, ""), fmt.Sprintf("        %s/32 dev eth0\n", testutil.VIP4),
			fmt.Sprintf("        %s/32 dev eth0\n        %s/32 dev eth0\n", testutil.VIP4, vip3), 1)
		reload(t, grown)
		waitFor(t, 5*time.Second, "lb1 to hold the added VIP", func() (bool, string) {
			return holds(t, topo, testutil.LB1, vip3), "not yet"
		})
		// lb2's list differs from lb1's adverts now; skip_check_adv_addr
		// keeps it following its master.
		time.Sleep(2 * mdi)
		wantVRRP(t, lb2, "VI_1 BACKUP 100")
		reload(t, lb1Conf(200, false, ""))
		waitFor(t, 5*time.Second, "the VIP the reload dropped to leave lb1", func() (bool, string) {
			return !holds(t, topo, testutil.LB1, vip3), "still held"
		})
		wantVRRP(t, lb1, "VI_1 MASTER 200")
	}}, {"b: a second instance is added", func(t *testing.T) {
		reload(t, lb1Conf(200, true, ""))
		waitFor(t, 5*time.Second+2*mdi, "lb1 to hold the second VIP", func() (bool, string) {
			return hasVIP2(), "not yet"
		})
	}}, {"c: an insecure notify script is refused", func(t *testing.T) {
		dir := t.TempDir()
		script := filepath.Join(dir, "notify.sh")
		writeFile(t, script, "#!/bin/sh\nexit 0\n")
		if err := os.Chmod(script, 0o777); err != nil {
			t.Fatal(err)
		}
		writeFile(t, lb1.conf, lb1Conf(50, true, "    notify_master "+script+"\n"))
		before := strings.Count(lb1.proc.Output(), "handed over")
		out, errOut, code, err := lb1.run("reload")
		if err != nil {
			t.Fatal(err)
		}
		if code != 1 || !strings.Contains(errOut, "vrrp_instance VI_1") || !strings.Contains(errOut, "notify_master") {
			t.Errorf("xlb reload with an insecure notify script: exit %d, stdout %q, stderr %q; want exit 1 naming the instance and notify_master", code, out, errOut)
		}
		time.Sleep(2 * mdi)
		if n := strings.Count(lb1.proc.Output(), "handed over"); n != before {
			t.Errorf("a refused reload handed over %d instances", n-before)
		}
		if got := link.find("vrrp", testutil.LB1, func(e l2Event) bool { return e.prio == 50 }); len(got) > 0 {
			t.Errorf("a refused reload advertised its priority 50")
		}
		if !hasVIP2() || !slices.Equal(vips.holders(), []string{testutil.LB1}) {
			t.Errorf("after a refused reload: second VIP held %v, VIP held by %v; want both on lb1", hasVIP2(), vips.holders())
		}
	}}, {"d: priority drops, lb2 preempts", func(t *testing.T) {
		reload(t, lb1Conf(50, true, ""))
		vips.waitHolders(t, 5*time.Second+2*mdi, testutil.LB2)
		if got := lb2.vrrpStates(); !slices.Equal(got, []string{"BACKUP", "MASTER"}) {
			t.Errorf("lb2 went through states %v, want BACKUP, MASTER", got)
		}
		if !hasVIP2() {
			t.Error("lb1 let go of the second VIP, whose instance did not change")
		}
		wantVRRP(t, lb1, "VI_1 BACKUP 50", "VI_2 MASTER 77")
		wantVRRP(t, lb2, "VI_1 MASTER 100")
	}}, {"e: the second instance is removed", func(t *testing.T) {
		reload(t, lb1Conf(50, false, ""))
		// It releases gracefully: priority 0, then the address goes
		// within Master_Down_Interval, since no peer takes it.
		waitFor(t, 5*time.Second+2*mdi, "the second VIP to leave lb1", func() (bool, string) {
			return !hasVIP2(), "still held"
		})
		if !strings.Contains(lb1.proc.Output(), "vrrp_instance=VI_2 from=MASTER to=RELEASING") {
			t.Errorf("the removed instance did not release gracefully:\n%s", lb1.proc.Output())
		}
	}}}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			break
		}
	}

	probes.waitAnswered(t, 10*time.Second, 200, "probes after the reloads")
	if o := probes.finish(t); o.lost > 0 {
		t.Errorf("through the reloads: %v; want none lost", o)
	} else {
		t.Logf("through the reloads: %v", o)
	}
	if n := vips.absences(); n > 0 {
		t.Errorf("the VIP was on neither LB at %d polls", n)
	}
	if both := vips.longestBoth(); both > v.advert {
		t.Errorf("both LBs held the VIP for %v, more than one advertisement interval (%v)", both, v.advert)
	}
}

// holds reports whether host has addr on eth0.
func holds(tb testing.TB, topo *testutil.Topology, host string, addr netip.Addr) bool {
	tb.Helper()
	ns, err := netns.GetFromPath(topo.NSPath(host))
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			return true
		}
	}
	return false
}
