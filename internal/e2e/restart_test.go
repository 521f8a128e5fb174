package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestCrashRestartKeepsFlows kills the daemon (SIGKILL, the host and its
// link up) while 60 connections run through the VIP whose flows no longer
// match the Maglev table: they were placed over rs1 and rs2, then a reload
// added rs3. The pinned program keeps forwarding; the next run adopts the
// flow table and gives every backend its old id again, so every
// connection stays on its real server. A run that started with an empty
// flow table would send about a third of them to rs3, which resets them.
func TestCrashRestartKeepsFlows(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := func(servers map[string]int) string {
		return keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP", Reals: reals(servers)})
	}
	two := conf(map[string]int{testutil.RS1: 1, testutil.RS2: 1})
	three := conf(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1})
	resetsBefore := tcpCounters(t, topo, testutil.Client)

	d := startLB(t, topo, testutil.LB1, two)
	pool := startEchoPool(t, topo, 60)
	pool.progress(t, "the connections opened", 3)
	writeFile(t, d.conf, three)
	if out := strings.TrimSpace(d.xlb(t, "reload")); out != "reloaded" {
		t.Fatalf("reload: %q", out)
	}
	pool.progress(t, "the reload that added rs3", 3)
	idsFile := filepath.Join(filepath.Dir(d.socket), "backend-ids.json")
	if _, err := os.Stat(idsFile); err != nil {
		t.Fatalf("the daemon saved no backend ids: %v", err)
	}

	d.kill(t)
	pool.progress(t, "the daemon died, its program still attached", 3)
	d = startLB(t, topo, testutil.LB1, three)
	if !strings.Contains(d.proc.Output(), "adopted the flow table") {
		t.Errorf("the restarted daemon did not adopt the flow table:\n%s", d.proc.Output())
	}
	pool.progress(t, "the restart", 5)

	for i, err := range pool.stop() {
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(resetsBefore, tcpCounters(t, topo, testutil.Client)); diff != "" {
		t.Errorf("client's TCP reset counters moved (-before +after):\n%s", diff)
	}

	// A clean stop takes the ids with the pins: the next run starts afresh.
	d.stop(t)
	if _, err := os.Stat(idsFile); !os.IsNotExist(err) {
		t.Errorf("backend ids still saved after a clean stop: %v", err)
	}
}
