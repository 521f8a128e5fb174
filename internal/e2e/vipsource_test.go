package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// vipInside is an IPv6 VIP inside the real servers' /64: as a /128 on the
// balancer's interface it wins the kernel's longest-prefix choice of
// source toward them.
const vipInside = "2001:db8:100::99"

// vipSourceConf serves vipInside:80 over rs1 (TCP_CHECK) and rs2
// (HTTP_GET), checked every second; vrrp adds an instance holding the VIP.
func vipSourceConf(vrrp bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "virtual_server %s %d {\n    delay_loop 1\n    lvs_sched wrr\n    lvs_method DR\n    protocol TCP\n", vipInside, httpPort)
	fmt.Fprintf(&b, "    real_server %s %d {\n        weight 1\n        TCP_CHECK {\n            connect_timeout 1\n            retry 1\n        }\n    }\n",
		testutil.HostIP6(testutil.RS1), httpPort)
	fmt.Fprintf(&b, "    real_server %s %d {\n        weight 1\n        HTTP_GET {\n            url {\n                path /\n                status_code 200\n            }\n            connect_timeout 1\n            retry 1\n        }\n    }\n}\n",
		testutil.HostIP6(testutil.RS2), httpPort)
	if vrrp {
		fmt.Fprintf(&b, "vrrp_instance VI_6 {\n    interface eth0\n    virtual_router_id 66\n    version 3\n    advert_int 0.2\n    priority 150\n    virtual_ipaddress {\n        %s/128\n    }\n}\n", vipInside)
	}
	return b.String()
}

// TestVIPNeverSourceOfChecks serves an IPv6 VIP inside the real servers'
// /64, first added to lb1's interface by hand, then by VRRP: TCP_CHECK and
// HTTP_GET keep both backends up, and traffic reaches both. Before, the
// kernel sent every probe from the VIP, each answer went to the real
// server's own loopback, and both backends went down within 2 s.
func TestVIPNeverSourceOfChecks(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	script := filepath.Join(testutil.MustRepoRoot(t), "scripts", "realserver.sh")
	for _, rs := range []string{testutil.RS1, testutil.RS2} {
		runOut(t, script, topo.NS(rs), testutil.VIP4.String(), vipInside)
	}
	// By hand, as users add it; the kernel now sources toward the real
	// servers from it.
	topo.Exec(t, testutil.LB1, "ip", "-6", "addr", "add", vipInside+"/128", "dev", "eth0", "nodad")
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, vipSourceConf(false))
	d := startDaemon(t, topo, conf)
	checkBothServe := func(phase string) {
		t.Helper()
		// A few check rounds: the bug took both down within 2 s.
		time.Sleep(4 * time.Second)
		if strings.Contains(d.proc.Output(), `msg="backend down"`) {
			t.Fatalf("%s: a backend went down:\n%s", phase, d.proc.Output())
		}
		got := map[string]int{}
		for range 30 {
			a, err := httpGetVIP(topo, testutil.Client, mustAddr(vipInside))
			if err != nil {
				t.Fatalf("%s: %v", phase, err)
			}
			got[a.Server]++
		}
		if got[testutil.RS1] == 0 || got[testutil.RS2] == 0 {
			t.Errorf("%s: answers by real server %v, want both", phase, got)
		}
	}
	checkBothServe("VIP added by hand")

	// By VRRP, which adds it deprecated (preferred_lft 0).
	topo.Exec(t, testutil.LB1, "ip", "-6", "addr", "del", vipInside+"/128", "dev", "eth0")
	writeFile(t, conf, vipSourceConf(true))
	if out := strings.TrimSpace(d.xlb(t, "reload")); out != "reloaded" {
		t.Fatalf("reload: %q", out)
	}
	waitFor(t, 10*time.Second, "VRRP to add the VIP", func() (bool, string) {
		out := topo.Exec(t, testutil.LB1, "ip", "-6", "addr", "show", "dev", "eth0")
		return strings.Contains(out, vipInside+"/128"), out
	})
	if out := topo.Exec(t, testutil.LB1, "ip", "-6", "addr", "show", "dev", "eth0"); !strings.Contains(out, "deprecated") {
		t.Errorf("the VIP VRRP added is not deprecated (preferred_lft 0):\n%s", out)
	}
	checkBothServe("VIP added by VRRP")
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
