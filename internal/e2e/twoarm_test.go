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
	startRealServersOn(t, topo, testutil.RS1, testutil.RS4)
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
	startRealServersOn(t, topo, testutil.RS1, testutil.RS4)
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

// TestTwoArmsTunnel: a tunnel real server behind the second arm. The FIB
// routes its outer packets out of eth1, so the program redirects them
// there through tx_ports with eth1's MAC, the path a tunnel to a server
// on another segment takes. rs1 (DR, beside the client) and rs4 (GUE)
// both serve, each seeing the client's own address, and no tunnel packet
// is passed to lb1's kernel.
func TestTwoArmsTunnel(t *testing.T) {
	testutil.RequireRoot(t, "builds the namespace topology and attaches XDP")
	obj := filepath.Join(testutil.MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o")
	topo := testutil.NewTopology(t, testutil.TopologyOptions{VIPOn: testutil.LB1, XDPPassObj: obj, Arm2: true})
	// rs4 takes the tunnel off: the kernel's devices, or XDP in place of
	// the pass program its uplink has (which realserver.sh would keep).
	args := []string{filepath.Join(testutil.MustRepoRoot(t), "scripts", "realserver.sh"), "--tunnel", fmt.Sprintf("gue:%d", testutil.GUEPort)}
	if decap := testutil.TunnelDecapObj(t); decap != "" {
		topo.Exec(t, testutil.RS4, "ip", "link", "set", "dev", "eth0", "xdp", "off")
		args = append(args, "--decap-obj", decap)
	}
	args = append(args, topo.NS(testutil.RS4), testutil.VIP4.String())
	runOut(t, args[0], args[1:]...)
	startRealServersOn(t, topo, testutil.RS1, testutil.RS4)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, fmt.Sprintf(`virtual_server %s %d {
    lvs_sched wrr
    lvs_method DR
    protocol TCP
    real_server %s %d {
        weight 1
    }
    real_server %s %d {
        weight 1
        lvs_method TUN type gue port %d
    }
}
`, testutil.VIP4, httpPort, testutil.HostIP4(testutil.RS1), httpPort, testutil.Arm2IP4(testutil.RS4), httpPort, testutil.GUEPort))
	d := startDaemon(t, topo, conf, "-i", "eth1")
	t.Cleanup(func() { d.checkStop(t) })

	got := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 40; i++ {
		a, err := httpGetVIP(topo, testutil.Client, testutil.VIP4)
		if err != nil {
			// The first requests may come before rs4's next hop on
			// eth1 is resolved: it is left out of the table until then.
			if time.Now().Before(deadline) {
				i--
				time.Sleep(100 * time.Millisecond)
				continue
			}
			t.Fatalf("request %d: %v (tunnel passes %v)", i, err, tunnelPasses(t, d))
		}
		if a.Peer.Addr() != testutil.HostIP4(testutil.Client) {
			t.Errorf("request %d: %s saw the client as %s", i, a.Server, a.Peer)
		}
		got[a.Server]++
	}
	t.Logf("answers by real server: %v", got)
	for _, rs := range []string{testutil.RS1, testutil.RS4} {
		if got[rs] == 0 {
			t.Errorf("%s answered none of 40 requests: %v", rs, got)
		}
	}
	passes := tunnelPasses(t, d)
	for name, n := range d.mustState(t).Counters {
		if name == "pass_no_tx_port" && n > 0 {
			passes[name] = n
		}
	}
	for name, n := range passes {
		if n > 0 {
			t.Errorf("%s: %d packets passed to lb1's kernel", name, n)
		}
	}
}
