package e2e

import (
	"fmt"
	"os"
	"os/exec"
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

	pool.stopUnbroken(t, topo, resetsBefore)

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

// TestFailedStartKeepsForwarding kills the daemon under 100 long-lived
// connections, then starts one whose configuration fails late (an insecure
// VRRP notify script, refused once the data path is loaded, the health
// checks and the API are up): it exits with that error, and the dead run's
// program keeps forwarding every connection with its pins unchanged. A good
// start then takes them over: 0 broken.
func TestFailedStartKeepsForwarding(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP",
		Reals: reals(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1})})
	resetsBefore := tcpCounters(t, topo, testutil.Client)

	d := startLB(t, topo, testutil.LB1, conf)
	pool := startEchoPool(t, topo, 100)
	pool.progress(t, "the connections opened", 3)
	d.kill(t)
	pool.progress(t, "the daemon died, its program still attached", 3)
	before := pinState(t, topo, d.pins)

	dir := t.TempDir()
	testutil.Chmod(t, dir, 0o755)
	insecure := testutil.WriteFile(t, filepath.Join(dir, "master.sh"), "#!/bin/sh\nexit 0\n", 0o777)
	bad := conf + "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    notify_master " + insecure +
		"\n    virtual_ipaddress {\n        192.0.2.99/32\n    }\n}\n"
	path := filepath.Join(dir, "keepalived.conf")
	writeFile(t, path, bad)
	failed := topo.StartNet(t, testutil.LB1, d.bin, "run", "-f", path, "-i", "eth0",
		"--xdp-mode", "native", "--bpffs", d.pins, "--socket", d.socket)
	select {
	case <-failed.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("xlb run with an insecure notify script still runs after 60 s:\n%s", failed.Output())
	}
	if failed.Stop() == nil || !strings.Contains(failed.Output(), "writable by others") {
		t.Errorf("the failed start: want an error naming the insecure script, got:\n%s", failed.Output())
	}
	if diff := cmp.Diff(before, pinState(t, topo, d.pins)); diff != "" {
		t.Errorf("pins or XDP program changed by the failed start (-before +after):\n%s", diff)
	}
	pool.progress(t, "the failed start", 3)

	d = startLB(t, topo, testutil.LB1, conf)
	if !strings.Contains(d.proc.Output(), "adopted the flow table") {
		t.Errorf("the good start did not adopt the flow table:\n%s", d.proc.Output())
	}
	pool.progress(t, "the good start", 3)
	pool.stopUnbroken(t, topo, resetsBefore)
}

// TestRestartAndUpgrade restarts the daemon as the unit does (SIGTERM, a
// clean exit, a new start), then again as another build of the binary,
// under 100 long-lived connections and a 1 ms UDP probe stream: the
// program forwards while no daemon runs, and each new run takes it over in
// place: 0 connections broken, 0 probes lost. `xlb stop` then leaves no
// XDP program, pin or socket behind.
func TestRestartAndUpgrade(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	startUDPEcho(t, topo)
	all := reals(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1})
	conf := keepalivedConf(
		virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP", Reals: all},
		virtualServer{VIP: testutil.VIP4, Port: probePort, Proto: "UDP", Reals: all})
	resetsBefore := tcpCounters(t, topo, testutil.Client)

	d := startLB(t, topo, testutil.LB1, conf)
	pool := startEchoPool(t, topo, 100)
	pool.progress(t, "the connections opened", 3)
	probes := startProber(t, topo)
	probes.waitAnswered(t, 10*time.Second, 100, "the probe stream to start")

	d.stop(t)
	pool.progress(t, "SIGTERM: the daemon is gone, its program forwards", 2)
	if _, err := os.Stat(d.pins); err != nil {
		t.Fatalf("SIGTERM removed the pins: %v", err)
	}
	d = startLB(t, topo, testutil.LB1, conf)
	pool.progress(t, "the restart", 3)

	upgrade := testutil.BuildBinaryWith(t, "./cmd/xlb", "-ldflags=-X main.version=e2e-upgrade")
	if out := runOut(t, upgrade, "version"); !strings.Contains(out, "e2e-upgrade") {
		t.Fatalf("the other build says %q", out)
	}
	d.stop(t)
	d = startLBWith(t, topo, testutil.LB1, conf, upgrade)
	pool.progress(t, "the upgrade", 3)
	probes.waitAnswered(t, 10*time.Second, 100, "probes after the upgrade")

	if out := probes.finish(t); out.lost != 0 {
		t.Errorf("probe stream across two restarts: %v", out)
	}
	pool.stopUnbroken(t, topo, resetsBefore)

	d.xlb(t, "stop")
	select {
	case <-d.proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("xlb run still running 10 s after xlb stop returned")
	}
	if _, err := os.Stat(d.pins); !os.IsNotExist(err) {
		t.Errorf("pin directory after xlb stop: %v", err)
	}
	if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
		t.Errorf("socket after xlb stop: %v", err)
	}
	if link := topo.Exec(t, testutil.LB1, "ip", "link", "show", "dev", "eth0"); strings.Contains(link, "xdp") {
		t.Errorf("lb1's eth0 still has an XDP program after xlb stop:\n%s", link)
	}
}

// runOut runs a command and returns its output, failing the test on error.
func runOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestInterfaceChanges changes lb1's MAC under 20 long-lived connections,
// then deletes its interface and creates it again, with the daemon running
// throughout: the program takes the new MAC at once (the connections carry
// on once the client has re-learnt it), `xlb list` says while the
// interface is gone that nothing reaches the services, and the program is
// attached again when the interface returns, with its flows.
func TestInterfaceChanges(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP",
		Reals: reals(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1})})
	d := startLB(t, topo, testutil.LB1, conf)
	pool := startEchoPool(t, topo, 20)
	pool.progress(t, "the connections opened", 3)
	relearn := func() {
		topo.Exec(t, testutil.Client, "ip", "neigh", "flush", "to", testutil.VIP4.String())
	}

	topo.Exec(t, testutil.LB1, "ip", "link", "set", "dev", "eth0", "address", "02:00:00:00:aa:01")
	relearn()
	waitFor(t, 10*time.Second, "the daemon to take the new MAC", func() (bool, string) {
		return strings.Contains(d.proc.Output(), "interface MAC changed"), ""
	})
	pool.progress(t, "the MAC change", 3)

	topo.Exec(t, testutil.LB1, "ip", "link", "del", "dev", "eth0")
	waitFor(t, 10*time.Second, "the daemon to see the interface go", func() (bool, string) {
		return strings.Contains(d.proc.Output(), "interface gone"), ""
	})
	if _, errOut, _, err := d.run("list"); err != nil || !strings.Contains(errOut, "no packet reaches these services") {
		t.Errorf("xlb list while the interface is gone: %v, stderr %q", err, errOut)
	}
	obj := filepath.Join(testutil.MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o")
	if err := topo.Up(testutil.TopologyOptions{VIPOn: testutil.LB1, XDPPassObj: obj}); err != nil {
		t.Fatal(err)
	}
	relearn()
	waitFor(t, 10*time.Second, "the daemon to attach again", func() (bool, string) {
		return strings.Contains(d.proc.Output(), "program attached again"), ""
	})
	if link := topo.Exec(t, testutil.LB1, "ip", "link", "show", "dev", "eth0"); !strings.Contains(link, "prog/xdp") {
		t.Errorf("lb1's new eth0 has no XDP program:\n%s", link)
	}
	pool.progress(t, "the interface came back", 3)
	fresh := startEchoPool(t, topo, 5)
	fresh.progress(t, "new connections after the interface came back", 3)
	for i, err := range append(pool.stop(), fresh.stop()...) {
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
}
