package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestTwoArms: lb1 takes clients on eth0 and has a real server, rs4, on a
// segment of its own behind eth1 (xlb run -i eth0 -i eth1). A service of
// each family has rs1, beside the client, and rs4: new connections
// through the VIP reach both, each server sees the client's own address,
// rs4's frames leave lb1 by XDP_REDIRECT on eth1 with eth1's MAC as their
// source, and a stop detaches the program from both interfaces.
func TestTwoArms(t *testing.T) {
	testutil.RequireRoot(t, "builds the namespace topology and attaches XDP")
	obj := filepath.Join(testutil.MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o")
	topo := testutil.NewTopology(t, testutil.TopologyOptions{VIPOn: testutil.LB1, XDPPassObj: obj, Arm2: true})
	bin := testutil.BuildBinary(t, "./internal/testutil/cmd/rsserver")
	for _, rs := range []string{testutil.RS1, testutil.RS4} {
		p := topo.Start(t, rs, bin, "-name", rs, "-http", fmt.Sprintf(":%d", httpPort), "-echo", fmt.Sprintf(":%d", echoPort))
		waitFor(t, 10*time.Second, "rsserver in "+rs+" to be ready", func() (bool, string) {
			return strings.Contains(p.Output(), "ready"), p.Output()
		})
	}
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, keepalivedConf(virtualServer{
		VIP: testutil.VIP4, Port: httpPort, Proto: "TCP",
		Reals: []realServer{{Addr: testutil.HostIP4(testutil.RS1), Weight: 1}, {Addr: testutil.Arm2IP4(testutil.RS4), Weight: 1}},
	}, virtualServer{
		VIP: testutil.VIP6, Port: httpPort, Proto: "TCP",
		Reals: []realServer{{Addr: testutil.HostIP6(testutil.RS1), Weight: 1}, {Addr: testutil.Arm2IP6(testutil.RS4), Weight: 1}},
	}))
	d := startDaemon(t, topo, conf, "-i", "eth1")
	t.Cleanup(func() {
		d.checkStop(t)
		out, err := exec.Command("ip", "-n", topo.NS(testutil.LB1), "link", "show", "dev", "eth1").CombinedOutput()
		if err != nil || strings.Contains(string(out), "xdp") {
			t.Errorf("lb1's eth1 after the daemon stopped (%v):\n%s", err, out)
		}
	})
	for _, name := range []string{"xdp_link_native", "xdp_link_native@eth1"} {
		if _, err := os.Stat(filepath.Join(d.pins, name)); err != nil {
			t.Errorf("link pin %s: %v", name, err)
		}
	}

	// rs4's capture: frames from lb1's eth1 MAC, to its own, carrying
	// the client's packets to the VIP.
	capture := topo.Start(t, testutil.RS4, "tcpdump", "-n", "-e", "-l", "-i", "eth0", "-c", "1",
		fmt.Sprintf("tcp and dst host %s and dst port %d", testutil.VIP4, httpPort))
	time.Sleep(500 * time.Millisecond) // tcpdump opens its socket

	// With equal weights, 40 connections miss one of two backends with
	// probability 2^-40.
	got := httpSpread(t, topo, 40)
	t.Logf("answers by real server: %v", got)
	for _, rs := range []string{testutil.RS1, testutil.RS4} {
		if got[rs] == 0 {
			t.Errorf("%s answered none of 40 requests: %v", rs, got)
		}
	}
	got6 := map[string]int{}
	for i := range 40 {
		a, err := httpGetVIP(topo, testutil.Client, testutil.VIP6)
		if err != nil {
			t.Fatalf("ipv6 request %d: %v", i, err)
		}
		if a.Peer.Addr() != testutil.HostIP6(testutil.Client) {
			t.Errorf("ipv6 request %d: %s saw the client as %s, want %s", i, a.Server, a.Peer, testutil.HostIP6(testutil.Client))
		}
		got6[a.Server]++
	}
	t.Logf("ipv6 answers by real server: %v", got6)
	for _, rs := range []string{testutil.RS1, testutil.RS4} {
		if got6[rs] == 0 {
			t.Errorf("%s answered none of 40 ipv6 requests: %v", rs, got6)
		}
	}
	select {
	case <-capture.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("rs4 saw no frame to the VIP:\n%s", capture.Output())
	}
	want := "02:00:00:00:02:02 > 02:00:00:00:00:14"
	if !strings.Contains(capture.Output(), want) {
		t.Errorf("rs4's frame to the VIP is not %s (lb1's eth1 to rs4):\n%s", want, capture.Output())
	}
	out, _, code, err := d.run("list", "-n")
	if err != nil || code != 0 {
		t.Fatalf("xlb list: exit %d, %v", code, err)
	}
	if !strings.Contains(out, testutil.Arm2IP4(testutil.RS4).String()+":80") {
		t.Errorf("xlb list does not show rs4:\n%s", out)
	}
}

// TestTwoArmsLifecycle runs 20 long-lived connections over a service with
// a real server on each arm through a crash and restart of the daemon and
// through lb1's second interface being deleted and created again: the
// restart takes both programs over in place, the interface that comes
// back gets its program again and the real server behind it its new
// index, and no connection breaks.
func TestTwoArmsLifecycle(t *testing.T) {
	testutil.RequireRoot(t, "builds the namespace topology and attaches XDP")
	obj := filepath.Join(testutil.MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o")
	opts := testutil.TopologyOptions{VIPOn: testutil.LB1, XDPPassObj: obj, Arm2: true}
	topo := testutil.NewTopology(t, opts)
	bin := testutil.BuildBinary(t, "./internal/testutil/cmd/rsserver")
	for _, rs := range []string{testutil.RS1, testutil.RS4} {
		p := topo.Start(t, rs, bin, "-name", rs, "-http", fmt.Sprintf(":%d", httpPort), "-echo", fmt.Sprintf(":%d", echoPort))
		waitFor(t, 10*time.Second, "rsserver in "+rs+" to be ready", func() (bool, string) {
			return strings.Contains(p.Output(), "ready"), p.Output()
		})
	}
	conf := keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP",
		Reals: []realServer{{Addr: testutil.HostIP4(testutil.RS1), Weight: 1}, {Addr: testutil.Arm2IP4(testutil.RS4), Weight: 1}}})
	resetsBefore := tcpCounters(t, topo, testutil.Client)
	d := startLB(t, topo, testutil.LB1, conf, "-i", "eth1")
	pool := startEchoPool(t, topo, 20)
	pool.progress(t, "the connections opened", 3)

	d.kill(t)
	pool.progress(t, "the daemon died, its programs still attached", 3)
	d = startLB(t, topo, testutil.LB1, conf, "-i", "eth1")
	if !strings.Contains(d.proc.Output(), "adopted the flow table") {
		t.Errorf("the restarted daemon did not adopt the flow table:\n%s", d.proc.Output())
	}
	pool.progress(t, "the restart", 3)

	topo.Exec(t, testutil.LB1, "ip", "link", "del", "dev", "eth1")
	waitFor(t, 10*time.Second, "the daemon to see eth1 go", func() (bool, string) {
		return strings.Contains(d.proc.Output(), "interface gone"), ""
	})
	if err := topo.Up(opts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the daemon to attach to eth1 again", func() (bool, string) {
		return strings.Contains(d.proc.Output(), "program attached again"), ""
	})
	if link := topo.Exec(t, testutil.LB1, "ip", "link", "show", "dev", "eth1"); !strings.Contains(link, "prog/xdp") {
		t.Errorf("lb1's new eth1 has no XDP program:\n%s", link)
	}
	pool.progress(t, "eth1 came back", 3)
	fresh := startEchoPool(t, topo, 10)
	fresh.progress(t, "new connections after eth1 came back", 3)
	for i, err := range fresh.stop() {
		if err != nil {
			t.Errorf("new connection %d: %v", i, err)
		}
	}
	pool.stopUnbroken(t, topo, resetsBefore)
}
