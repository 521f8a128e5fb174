package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestReloadDoesNotBlockHealth reloads away a VRRP master that has no peer
// to hand over to: it keeps its VIP until Master_Down_Interval has passed
// (about 9 s at advert_int 3), and the reload's release waits that long.
// A backend that dies meanwhile leaves the table within the health check's
// bound, while the released VIP is still there: health events are served
// while a reload waits.
func TestReloadDoesNotBlockHealth(t *testing.T) {
	topo := newTopology(t)
	procs := startRealServers(t, topo)
	const released = "192.0.2.77"
	svc := fmt.Sprintf("virtual_server %s %d {\n    delay_loop 1\n    lvs_sched wrr\n    lvs_method DR\n    protocol TCP\n", testutil.VIP4, httpPort)
	for _, rs := range []string{testutil.RS1, testutil.RS2} {
		svc += fmt.Sprintf("    real_server %s %d {\n        weight 1\n        TCP_CHECK {\n            connect_timeout 1\n            retry 1\n        }\n    }\n", testutil.HostIP4(rs), httpPort)
	}
	svc += "}\n"
	vrrp := fmt.Sprintf("vrrp_instance VI_GONE {\n    interface eth0\n    virtual_router_id 77\n    advert_int 3\n    priority 150\n    virtual_ipaddress {\n        %s/32\n    }\n}\n", released)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, svc+vrrp)
	d := startDaemon(t, topo, conf)
	hasVIP := func() bool {
		return strings.Contains(topo.Exec(t, testutil.LB1, "ip", "-4", "addr", "show", "dev", "eth0"), released+"/32")
	}
	waitFor(t, 30*time.Second, "VI_GONE to become master", func() (bool, string) { return hasVIP(), "" })

	writeFile(t, conf, svc)
	if out := strings.TrimSpace(d.xlb(t, "reload")); out != "reloaded" {
		t.Fatalf("reload: %q", out)
	}
	healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	rs1 := fmt.Sprintf("%s:%d", testutil.HostIP4(testutil.RS1), httpPort)
	waitFor(t, 10*time.Second, "rs1 to leave the table", func() (bool, string) {
		out := d.xlb(t, "list", "-n")
		return !strings.Contains(out, rs1), out
	})
	if !hasVIP() {
		t.Errorf("the released master's VIP was gone before rs1 left the table: the test shows nothing")
	}
	waitFor(t, 30*time.Second, "the released master to let its VIP go", func() (bool, string) { return !hasVIP(), "" })
}
