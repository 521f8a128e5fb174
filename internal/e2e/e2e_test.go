package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/testutil"
)

// reals lists real servers by host name with their weights, in rs1..rs3
// order; a host missing from weights is not a backend.
func reals(weights map[string]int) []realServer {
	var out []realServer
	for _, rs := range realServers {
		if w, ok := weights[rs]; ok {
			out = append(out, realServer{Addr: testutil.HostIP4(rs), Weight: w})
		}
	}
	return out
}

// copyConfig copies a testdata configuration into the test's directory,
// where the daemon reads it.
func copyConfig(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	writeFile(t, path, string(b))
	return path
}

// TestHTTPReachesEveryBackend sends HTTP requests from the client to the
// VIP, each on a new connection: every real server must answer some, and
// each must have seen the client's own address and port, which only
// direct routing (no NAT, no proxy) delivers.
func TestHTTPReachesEveryBackend(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, keepalivedConf(virtualServer{
		VIP: testutil.VIP4, Port: httpPort, Proto: "TCP",
		Reals: reals(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1}),
	}))
	startDaemon(t, topo, conf)

	// With equal weights, 60 connections miss a given backend with
	// probability (2/3)^60, about 3e-11.
	got := httpSpread(t, topo, 60)
	t.Logf("answers by real server: %v", got)
	for _, rs := range realServers {
		if got[rs] == 0 {
			t.Errorf("%s answered none of 60 requests: %v", rs, got)
		}
	}
	for name := range got {
		if !slices.Contains(realServers, name) {
			t.Errorf("answer from %q, which is not a real server", name)
		}
	}
}

// TestRepliesBypassBalancer checks the direct-routing half that the
// balancer does not do: real servers answer the client straight. Packet
// captures on the client and on lb1 show that every reply came from a real
// server's MAC and none reached lb1, and the service's counters equal,
// packet for packet and byte for byte, what the client sent to the VIP.
// The configuration is the native YAML format.
func TestRepliesBypassBalancer(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	d := startDaemon(t, topo, copyConfig(t, "web.yaml"))

	var client, lb lockedCounts
	clientCap := startCapture(t, topo, testutil.Client, func(f []byte, n int, pt uint8) {
		src, dst, _, ok := ipv4(f)
		switch {
		case !ok:
		case pt == unix.PACKET_OUTGOING && dst == testutil.VIP4:
			client.add("to-vip-pkts", 1)
			client.add("to-vip-bytes", int64(n))
		case pt != unix.PACKET_OUTGOING && src == testutil.VIP4:
			client.add("replies from "+net.HardwareAddr(f[6:12]).String(), 1)
		}
	})
	lbCap := startCapture(t, topo, testutil.LB1, func(f []byte, _ int, _ uint8) {
		src, dst, _, ok := ipv4(f)
		switch {
		case !ok:
		case src == testutil.VIP4:
			lb.add("replies", 1)
		case dst == testutil.VIP4:
			// XDP_TX sends these back out before the stack, where a
			// packet socket would see them.
			lb.add("to-vip-in-stack", 1)
		}
	})
	before := d.mustState(t)

	const requests = 30
	httpSpread(t, topo, requests)

	vip := testutil.VIP4
	var svc *api.Service
	waitFor(t, 5*time.Second, "the service's counters to equal the client's packets to the VIP", func() (bool, string) {
		st, err := d.state()
		if err != nil {
			return false, err.Error()
		}
		svc = findService(st, vip, httpPort)
		if svc == nil {
			return false, "no service " + vip.String()
		}
		b := findService(before, vip, httpPort).Stats
		gotP, gotB := svc.Stats.InPkts-b.InPkts, svc.Stats.InBytes-b.InBytes
		wantP, wantB := uint64(client.get("to-vip-pkts")), uint64(client.get("to-vip-bytes"))
		return gotP == wantP && gotB == wantB,
			fmt.Sprintf("service counted %d packets, %d bytes; the client sent %d packets, %d bytes to the VIP", gotP, gotB, wantP, wantB)
	})
	for name, c := range map[string]*capture{"client": clientCap, "lb1": lbCap} {
		if drops, err := c.stop(); err != nil || drops > 0 {
			t.Fatalf("capture on %s: %d frames dropped, error %v: the counts above cannot be trusted", name, drops, err)
		}
	}

	if n := lb.get("replies"); n != 0 {
		t.Errorf("lb1 received %d packets from the VIP to the client: replies must bypass the balancer", n)
	}
	if n := lb.get("to-vip-in-stack"); n != 0 {
		t.Errorf("lb1's stack received %d packets for the VIP: the data path should have forwarded them", n)
	}
	seen := client.snapshot()
	t.Logf("client: %v", seen)
	var fromRS, allReplies int64
	for _, rs := range realServers {
		fromRS += seen["replies from "+testutil.HostMAC(rs).String()]
	}
	for k, v := range seen {
		if strings.HasPrefix(k, "replies from ") {
			allReplies += v
		}
	}
	if fromRS == 0 || fromRS != allReplies {
		t.Errorf("the client got %d replies from the VIP, %d of them from a real server's MAC: want all, and some", allReplies, fromRS)
	}
	if got := svc.Stats.Conns - findService(before, vip, httpPort).Stats.Conns; got != requests {
		t.Errorf("service counted %d new connections, want %d", got, requests)
	}
	if svc.Stats.OutPkts != 0 || svc.Stats.OutBytes != 0 {
		t.Errorf("service counted %d packets, %d bytes out: in direct routing the balancer sees no replies", svc.Stats.OutPkts, svc.Stats.OutBytes)
	}
	var sumP uint64
	for _, b := range svc.Backends {
		sumP += b.Stats.InPkts
	}
	if sumP != svc.Stats.InPkts {
		t.Errorf("backends counted %d packets in all, the service %d", sumP, svc.Stats.InPkts)
	}
}

// ignoreCounters compares two listings by what is served, not by the
// traffic that went through meanwhile.
var ignoreCounters = cmp.Options{
	cmpopts.IgnoreFields(api.State{}, "Taken", "FlowEntries", "Counters"),
	cmpopts.IgnoreFields(api.Service{}, "Stats", "ActiveConn", "InActConn"),
	cmpopts.IgnoreFields(api.Backend{}, "Stats", "ActiveConn", "InActConn"),
}

// TestLongLivedConnectionsSurviveChanges keeps 100 TCP connections
// echoing through the VIP while the configuration and the network change
// under them: (a) a reload adds a backend, (b) a reload changes weights,
// (c) an invalid reload is rejected, (d) a backend's MAC changes. Every
// connection must go on echoing every byte with no reset, and new
// connections must reach the added backend.
func TestLongLivedConnectionsSurviveChanges(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	stage := func(weights map[string]int) string {
		return keepalivedConf(
			virtualServer{VIP: testutil.VIP4, Port: httpPort, Proto: "TCP", Reals: reals(weights)},
			virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP", Reals: reals(weights)},
		)
	}
	writeFile(t, conf, stage(map[string]int{testutil.RS1: 1, testutil.RS2: 1}))
	d := startDaemon(t, topo, conf)

	hosts := append([]string{testutil.Client}, realServers...)
	resetsBefore := map[string]map[string]int64{}
	for _, h := range hosts {
		resetsBefore[h] = tcpCounters(t, topo, h)
	}

	const conns = 100
	pool := startEchoPool(t, topo, conns)
	pool.progress(t, "connecting", 3)

	// Each step changes one thing under the running connections; a failed
	// step ends the sequence, and the connections are checked either way.
	weights := map[string]int{testutil.RS1: 3, testutil.RS2: 1, testutil.RS3: 2}
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{{"a: reload adds a backend", func(t *testing.T) {
		writeFile(t, conf, stage(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1}))
		if out := d.xlb(t, "reload"); strings.TrimSpace(out) != "reloaded" {
			t.Errorf("xlb reload printed %q, want \"reloaded\"", out)
		}
		st := d.mustState(t)
		for _, port := range []uint16{httpPort, echoPort} {
			b := findBackend(findService(st, testutil.VIP4, port), testutil.HostIP4(testutil.RS3))
			if b == nil || b.Unresolved || b.Weight != 1 {
				t.Errorf("after the reload, port %d serves rs3 as %+v, want it resolved at weight 1", port, b)
			}
		}
		pool.progress(t, "adding rs3", 5)
		got := httpSpread(t, topo, 40)
		t.Logf("new connections after adding rs3: %v", got)
		if got[testutil.RS3] == 0 {
			t.Errorf("none of 40 new connections reached the added rs3: %v", got)
		}
	}}, {"b: SIGHUP reload changes weights", func(t *testing.T) {
		writeFile(t, conf, stage(weights))
		d.signal(t, syscall.SIGHUP)
		waitFor(t, 10*time.Second, "the new weights to be served", func() (bool, string) {
			st, err := d.state()
			if err != nil {
				return false, err.Error()
			}
			got := map[string]uint32{}
			for _, rs := range realServers {
				if b := findBackend(findService(st, testutil.VIP4, echoPort), testutil.HostIP4(rs)); b != nil {
					got[rs] = b.Weight
				}
			}
			want := map[string]uint32{testutil.RS1: 3, testutil.RS2: 1, testutil.RS3: 2}
			return cmp.Equal(want, got), fmt.Sprintf("weights %v, want %v", got, want)
		})
		pool.progress(t, "changing weights", 5)
	}}, {"c: invalid reload is rejected", func(t *testing.T) {
		before := d.mustState(t)
		bad := stage(map[string]int{testutil.RS1: 3, testutil.RS2: -3, testutil.RS3: 2})
		writeFile(t, conf, bad)
		t.Cleanup(func() { writeFile(t, conf, stage(weights)) })
		// Errors name the line of the bad weight, the line after its
		// real_server's.
		var wantPos []string
		for _, port := range []uint16{httpPort, echoPort} {
			line := lineOf(t, bad, fmt.Sprintf("real_server %s %d {", testutil.HostIP4(testutil.RS2), port))
			wantPos = append(wantPos, fmt.Sprintf("%s:%d: ", conf, line+1))
		}

		out, errOut, code, err := d.run("reload")
		if err != nil {
			t.Fatal(err)
		}
		if code != 1 {
			t.Errorf("xlb reload of an invalid file: exit status %d, want 1", code)
		}
		for _, pos := range wantPos {
			if !strings.Contains(errOut, pos) {
				t.Errorf("xlb reload of an invalid file: stderr does not name %s:\n%s", pos, errOut)
			}
		}
		if strings.Contains(out, "reloaded") {
			t.Errorf("xlb reload of an invalid file printed %q", out)
		}
		if diff := cmp.Diff(before, d.mustState(t), ignoreCounters); diff != "" {
			t.Errorf("state changed by a rejected reload (-before +after):\n%s", diff)
		}

		// The same through SIGHUP, whose only answer is the log.
		const rejected = "reload rejected"
		n := strings.Count(d.proc.Output(), rejected)
		d.signal(t, syscall.SIGHUP)
		waitFor(t, 10*time.Second, "the daemon to log the rejected SIGHUP reload", func() (bool, string) {
			return strings.Count(d.proc.Output(), rejected) > n, "no new \"" + rejected + "\" in the log"
		})
		if diff := cmp.Diff(before, d.mustState(t), ignoreCounters); diff != "" {
			t.Errorf("state changed by a rejected SIGHUP reload (-before +after):\n%s", diff)
		}
		pool.progress(t, "the rejected reloads", 5)
	}}, {"d: a backend's MAC changes", func(t *testing.T) {
		rs2 := testutil.HostIP4(testutil.RS2)
		if b := findBackend(findService(d.mustState(t), testutil.VIP4, echoPort), rs2); b == nil || b.ActiveConn == 0 {
			t.Fatalf("rs2 holds no echo connection (%+v): changing its MAC would test nothing", b)
		}
		newMAC := "02:00:00:00:0a:12"
		// rs2 has arp_notify=1: the change goes out as a gratuitous ARP.
		topo.Exec(t, testutil.RS2, "ip", "link", "set", "dev", "eth0", "address", newMAC)
		waitFor(t, 10*time.Second, "the daemon to follow rs2's new MAC", func() (bool, string) {
			st, err := d.state()
			if err != nil {
				return false, err.Error()
			}
			var macs []string
			for _, port := range []uint16{httpPort, echoPort} {
				if b := findBackend(findService(st, testutil.VIP4, port), rs2); b != nil {
					macs = append(macs, b.MAC)
				}
			}
			return slices.Equal(macs, []string{newMAC, newMAC}), fmt.Sprintf("rs2's MAC in the two services: %v", macs)
		})
		pool.progress(t, "rs2's MAC changed", 5)
	}}}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			break
		}
	}

	st := d.mustState(t)
	var spread []string
	for _, b := range findService(st, testutil.VIP4, echoPort).Backends {
		spread = append(spread, fmt.Sprintf("%s: %d active", b.Addr, b.ActiveConn))
	}
	t.Logf("echo connections by backend: %s", strings.Join(spread, ", "))

	var rounds, bytes int64
	var failed, resets int
	for i, err := range pool.stop() {
		rounds += pool.conns[i].rounds.Load()
		bytes += pool.conns[i].bytes.Load()
		if err == nil {
			continue
		}
		if failed++; errors.Is(err, syscall.ECONNRESET) {
			resets++
		}
		const shown = 10
		if failed <= shown {
			t.Errorf("connection %d (%s): %v", i, pool.conns[i].c.LocalAddr(), err)
		} else if failed == shown+1 {
			t.Errorf("(further failed connections not shown)")
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d connections failed, %d of them reset", failed, conns, resets)
	}
	t.Logf("%d connections echoed %d bytes in %d round trips", conns, bytes, rounds)
	for _, h := range hosts {
		if diff := cmp.Diff(resetsBefore[h], tcpCounters(t, topo, h)); diff != "" {
			t.Errorf("%s's TCP reset and failure counters moved (-before +after):\n%s", h, diff)
		}
	}
}

// TestListGolden checks `xlb list` of a running daemon against a golden
// file, for the seed's case: two services sharing two real servers, one
// of them at weight 0. No traffic flows, so every counter is zero and the
// output is exact. Run with -update to rewrite the golden file.
func TestListGolden(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	d := startDaemon(t, topo, copyConfig(t, "shared.conf"))
	// The real servers pass their TCP checks; should a checker start them
	// down until a first check, the listing settles once it has run.
	waitFor(t, 15*time.Second, "every backend to serve at its configured weight", func() (bool, string) {
		st, err := d.state()
		if err != nil {
			return false, err.Error()
		}
		for _, s := range st.Services {
			for _, b := range s.Backends {
				if b.Weight != b.ConfigWeight {
					return false, fmt.Sprintf("%s:%d: backend %s at weight %d, configured %d", s.Addr, s.Port, b.Addr, b.Weight, b.ConfigWeight)
				}
			}
		}
		return true, ""
	})

	for _, args := range [][]string{{"list"}, {"list", "-n"}} {
		got := d.xlb(t, args...)
		golden := filepath.Join("testdata", "shared.list.golden")
		testutil.Golden(t, golden, []byte(got))
	}
}
