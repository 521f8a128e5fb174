package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	idsFile := filepath.Join(d.pins, "backend_ids")
	if _, err := os.Stat(idsFile); err != nil {
		t.Fatalf("the daemon pinned no backend ids: %v", err)
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

	// xlb stop takes the ids with the pins: the next run starts afresh.
	d.xlb(t, "stop")
	<-d.proc.Done()
	if _, err := os.Stat(idsFile); !os.IsNotExist(err) {
		t.Errorf("backend ids still saved after a clean stop: %v", err)
	}
}

// TestOnePinDirOneDaemon starts two `xlb run` on one pin directory at the
// same moment: exactly one serves, the other exits naming the holder's
// pid. A third, started while connections run through the first, is
// refused the same way and leaves the first one's pins, XDP program and
// flows as they were: every connection carries on.
func TestOnePinDirOneDaemon(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP",
		Reals: reals(map[string]int{testutil.RS1: 1, testutil.RS2: 1})}))
	bin := testutil.BuildBinary(t, "./cmd/xlb")
	pins := filepath.Join(testutil.MountBPFFS(t), "xlb")
	start := func() *daemon {
		d := &daemon{topo: topo, bin: bin, conf: conf, pins: pins, socket: filepath.Join(t.TempDir(), "xlb.sock")}
		d.proc = topo.StartNet(t, testutil.LB1, bin, "run", "-f", conf, "-i", "eth0",
			"--xdp-mode", "native", "--bpffs", pins, "--socket", d.socket, "--state-dir", filepath.Dir(d.socket))
		return d
	}
	// refused waits for d to exit and checks that it named holder.
	refused := func(d, holder *daemon) {
		t.Helper()
		select {
		case <-d.proc.Done():
		case <-time.After(60 * time.Second):
			t.Fatalf("a second xlb run on %s still runs after 60 s:\n%s", pins, d.proc.Output())
		}
		want := fmt.Sprintf("locked by another xlb (pid %d)", holder.proc.Cmd.Process.Pid)
		if d.proc.Stop() == nil || !strings.Contains(d.proc.Output(), want) {
			t.Errorf("the refused xlb run: want a failure saying %q, got:\n%s", want, d.proc.Output())
		}
	}

	a, b := start(), start()
	var winner, loser *daemon
	select {
	case <-a.proc.Done():
		winner, loser = b, a
	case <-b.proc.Done():
		winner, loser = a, b
	case <-time.After(60 * time.Second):
		t.Fatalf("both xlb run on one pin directory still run after 60 s:\n%s\n%s", a.proc.Output(), b.proc.Output())
	}
	refused(loser, winner)
	t.Cleanup(func() { winner.checkStop(t) })
	winner.waitServing(t, "the xlb run that holds the pins")

	pool := startEchoPool(t, topo, 20)
	pool.progress(t, "the connections opened", 3)
	before := pinState(t, topo, pins)
	refused(start(), winner)
	if diff := cmp.Diff(before, pinState(t, topo, pins)); diff != "" {
		t.Errorf("pins or XDP program changed by the refused start (-before +after):\n%s", diff)
	}
	pool.progress(t, "the refused start", 3)
	for i, err := range pool.stop() {
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
}

// pinState is what a refused start must not change: each pin with its
// inode (a pin removed and made again has another) and the program
// attached to lb1's eth0.
func pinState(t *testing.T, topo *testutil.Topology, pins string) []string {
	t.Helper()
	entries, err := os.ReadDir(pins)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s inode %d", e.Name(), info.Sys().(*syscall.Stat_t).Ino))
	}
	link := topo.Exec(t, testutil.LB1, "ip", "link", "show", "dev", "eth0")
	for _, l := range strings.Split(link, "\n") {
		if strings.Contains(l, "prog/xdp") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}
