package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/testutil"
)

// TestHealthCheckDrainAndRecovery runs the seed's shape (a web and an echo
// service sharing rs1..rs3, HTTP_GET and TCP_CHECK with the fast
// settings) under steady load: long-lived echo connections and a stream of
// new HTTP connections. rs1's server stops listening; within keepalived's
// bound plus a second the API shows rs1 out of both services, at weight 0
// with inhibit_on_failure and gone without it, and from then on no new
// connection reaches it while every connection to rs2 and rs3 echoes every
// byte. With inhibit_on_failure, rs1's own established connections carry on
// too: that is the drain. rs1 listens again; within keepalived's recovery
// bound plus a second it is back at its configured weight and takes new
// connections.
func TestHealthCheckDrainAndRecovery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inhibit bool
	}{
		{"inhibit_on_failure", true},
		{"removal", false},
	} {
		t.Run(tc.name, func(t *testing.T) { testHealthDrain(t, tc.inhibit) })
	}
}

func testHealthDrain(t *testing.T, inhibit bool) {
	h := healthFast
	topo := newTopology(t)
	procs := startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, healthConf(h, inhibit))
	d := startDaemon(t, topo, conf)
	// Every check has reached a verdict by then: its first probe starts
	// after a warmup of at most delay_loop and ends within
	// connect_timeout. Before that one failure takes a server out
	// (keepalived's startup rule), which is not what the bound is about.
	warm := time.Now().Add(h.delayLoop + h.connectTimeout)
	initial := healthWaitConfigured(t, d)
	rs1 := testutil.HostIP4(testutil.RS1)
	clientBefore := tcpCounters(t, topo, testutil.Client)

	// Steady load: echo connections spread by weight (rs1 holds about
	// half), and new HTTP connections answered by all three servers.
	pool := startEchoPool(t, topo, 24)
	pool.progress(t, "connecting", 3)
	var onRS1, elsewhere []*echoConn
	for i, rs := range healthEchoPlacement(t, topo, healthConnsOf(pool.conns)) {
		if rs == testutil.RS1 {
			onRS1 = append(onRS1, pool.conns[i])
		} else {
			elsewhere = append(elsewhere, pool.conns[i])
		}
	}
	t.Logf("echo connections: %d on rs1, %d on rs2 and rs3", len(onRS1), len(elsewhere))
	if len(onRS1) == 0 || len(elsewhere) == 0 {
		t.Fatalf("echo connections: %d on rs1, %d elsewhere: the test needs both", len(onRS1), len(elsewhere))
	}
	survivors := elsewhere
	if inhibit {
		survivors = pool.conns
	}
	load := healthStartHTTPLoad(t, topo)
	for _, rs := range realServers {
		load.waitServed(t, time.Now(), rs, 2)
	}

	// rs1 fails.
	time.Sleep(time.Until(warm))
	failed := healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	took := healthWaitEach(t, d, failed, "rs1 to leave the table", h.detectBound, healthSlack, func(s *api.Service) (bool, string) {
		b := findBackend(s, rs1)
		if inhibit {
			return b != nil && b.Weight == 0, fmt.Sprintf("rs1 listed as %+v, want weight 0", b)
		}
		return b == nil, fmt.Sprintf("rs1 listed as %+v, want it gone", b)
	})
	out := time.Now()
	for _, s := range healthServices {
		t.Logf("port %d (%s): rs1 out after %v (keepalived's bound %v)", s.port, s.check, took[s.port].Round(time.Millisecond), h.detectBound(s.check))
	}
	healthCheckList(t, d, inhibit)
	down := d.mustState(t)

	// No new connection reaches rs1; established ones carry on.
	load.waitServed(t, out, "", 30)
	var fresh []net.Conn
	err := topo.Do(testutil.Client, func() error {
		to := netip.AddrPortFrom(testutil.VIP4, echoPort)
		for i := range 12 {
			c, err := net.DialTimeout("tcp", to.String(), 5*time.Second)
			if err != nil {
				return fmt.Errorf("new echo connection %d to %s while rs1 is out: %w", i, to, err)
			}
			fresh = append(fresh, c)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range fresh {
			c.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, rs := range healthEchoPlacement(t, topo, fresh) {
		if rs == testutil.RS1 {
			t.Errorf("new echo connection %d (%s) reached rs1 while it was out", i, fresh[i].LocalAddr())
		}
		fresh[i].Close()
	}
	healthProgress(t, survivors, "rs1 failed", 5)
	if inhibit {
		now := d.mustState(t)
		for _, s := range healthServices {
			b0 := findBackend(findService(down, testutil.VIP4, s.port), rs1)
			b1 := findBackend(findService(now, testutil.VIP4, s.port), rs1)
			if b0 == nil || b1 == nil {
				t.Fatalf("port %d: rs1 listed as %+v, then %+v, want it kept at weight 0", s.port, b0, b1)
			}
			if b1.Stats.Conns != b0.Stats.Conns {
				t.Errorf("port %d: rs1 took %d new connections at weight 0", s.port, b1.Stats.Conns-b0.Stats.Conns)
			}
			if s.port == echoPort && b1.ActiveConn == 0 {
				t.Errorf("port %d: rs1 lists no active connection while draining %d", s.port, len(onRS1))
			}
		}
	}

	// rs1 recovers.
	restarted := healthToggle(t, procs[testutil.RS1], testutil.RS1, true)
	took = healthWaitEach(t, d, restarted, "rs1 to come back at its configured weight", h.recoverBound, healthSlack, func(s *api.Service) (bool, string) {
		b := findBackend(s, rs1)
		return b != nil && b.Weight == uint32(healthWeights[testutil.RS1]), fmt.Sprintf("rs1 listed as %+v", b)
	})
	back := time.Now()
	for _, s := range healthServices {
		t.Logf("port %d (%s): rs1 back after %v (keepalived's bound %v)", s.port, s.check, took[s.port].Round(time.Millisecond), h.recoverBound(s.check))
	}
	load.waitServed(t, back, testutil.RS1, 3)
	again := startEchoPool(t, topo, 20)
	again.progress(t, "connecting after rs1 came back", 2)
	placed := healthEchoPlacement(t, topo, healthConnsOf(again.conns))
	n := 0
	for _, rs := range placed {
		if rs == testutil.RS1 {
			n++
		}
	}
	if n == 0 {
		t.Errorf("none of %d new echo connections reached rs1 after it came back: %v", len(placed), placed)
	}
	for i, err := range again.stop() {
		if err != nil {
			t.Errorf("echo connection %d opened after the recovery: %v", i, err)
		}
	}
	healthProgress(t, survivors, "rs1 came back", 3)
	if diff := cmp.Diff(initial, d.mustState(t), ignoreCounters); diff != "" {
		t.Errorf("served state after the recovery differs from the start (-start +now):\n%s", diff)
	}

	// What the traffic saw, from start to end.
	reqs := load.stop()
	resets := healthCheckRequests(t, reqs, failed, out)
	isSurvivor := map[*echoConn]bool{}
	for _, e := range survivors {
		isSurvivor[e] = true
	}
	var rounds, bytes int64
	lost := 0
	for i, err := range pool.stop() {
		e := pool.conns[i]
		rounds += e.rounds.Load()
		bytes += e.bytes.Load()
		if errors.Is(err, syscall.ECONNRESET) {
			resets++
		}
		switch {
		case err == nil:
		case isSurvivor[e]:
			t.Errorf("echo connection %s: %v", e.c.LocalAddr(), err)
		default:
			// Removal re-hashes rs1's flows onto servers that do not
			// know them: they are reset, as the design says.
			lost++
		}
	}
	t.Logf("%d echo connections echoed %d bytes in %d round trips; %d of rs1's %d ended with its removal; %d HTTP requests",
		len(pool.conns), bytes, rounds, lost, len(onRS1), len(reqs))
	// The client's own count of connections reset once established must be
	// exactly the resets seen above: nothing else was cut.
	after := tcpCounters(t, topo, testutil.Client)
	if got := after["EstabResets"] - clientBefore["EstabResets"]; got != int64(resets) {
		t.Errorf("the client's kernel counted %d established connections reset, the test saw %d", got, resets)
	}
}

// healthCheckList checks `xlb list -n` while rs1 is out: at weight 0 in
// both services with inhibit_on_failure, not listed without it, rs2 and
// rs3 at their configured weights either way.
func healthCheckList(t *testing.T, d *daemon, inhibit bool) {
	t.Helper()
	out := d.xlb(t, "list", "-n")
	got := healthListWeights(t, out)
	want := map[string]map[string]int{}
	for _, s := range healthServices {
		svc := map[string]int{}
		for _, rs := range realServers {
			w := healthWeights[rs]
			if rs == testutil.RS1 {
				if !inhibit {
					continue
				}
				w = 0
			}
			svc[netip.AddrPortFrom(testutil.HostIP4(rs), s.port).String()] = w
		}
		want[fmt.Sprintf("TCP %s:%d", testutil.VIP4, s.port)] = svc
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("xlb list -n while rs1 is out (-want +got):\n%s\n%s", diff, out)
	}
}

// healthCheckRequests checks the HTTP load against the failure's timeline:
// requests may fail only between rs1's failure and its removal from the
// table, and only as connections rs1 refused or reset. Every request that
// started later was answered: while rs1 was out, a new connection sent its
// way would have been refused, its listeners being closed. It returns how
// many requests were reset.
func healthCheckRequests(t *testing.T, reqs []healthRequest, failed, out time.Time) (resets int) {
	t.Helper()
	var cut, answered int
	for _, r := range reqs {
		if r.err == nil {
			if !r.start.Before(out) {
				answered++
			}
			continue
		}
		reset := errors.Is(r.err, syscall.ECONNRESET)
		if reset {
			resets++
		}
		if (errors.Is(r.err, syscall.ECONNREFUSED) || reset) && r.end.After(failed) && r.start.Before(out) {
			cut++
			continue
		}
		t.Errorf("request started %v after rs1 failed: %v", r.start.Sub(failed).Round(time.Millisecond), r.err)
	}
	t.Logf("HTTP load: %d requests; %d refused or reset by rs1 before it left the table; all %d started after that answered", len(reqs), cut, answered)
	return resets
}

// TestHealthAlpha runs the health tests' shape with keepalived's alpha on
// both virtual servers and rs1 not listening when the daemon starts: every
// real server starts down, rs1 never takes a connection (it is at weight 0
// in every listing from the first one on), rs2 and rs3 come up with their
// first passing check, and rs1 comes up once it listens. rs1's notify_up
// and notify_down scripts run when it comes up and when it stops again,
// and not for the alpha start, which is no change.
func TestHealthAlpha(t *testing.T) {
	topo := newTopology(t)
	procs := startRealServers(t, topo)
	healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes")
	notify := testutil.WriteFile(t, filepath.Join(dir, "notify.sh"), fmt.Sprintf("#!/bin/sh\necho \"$1\" >> %s\n", notes), 0o755)
	text := strings.ReplaceAll(healthConf(healthFast, true), "    protocol TCP\n", "    protocol TCP\n    alpha\n")
	for _, s := range healthServices {
		rs := fmt.Sprintf("    real_server %s %d {\n", testutil.HostIP4(testutil.RS1), s.port)
		text = strings.Replace(text, rs, fmt.Sprintf("%s        notify_up \"%s up-%d\"\n        notify_down \"%s down-%d\"\n", rs, notify, s.port, notify, s.port), 1)
	}
	conf := filepath.Join(dir, "keepalived.conf")
	writeFile(t, conf, text)
	d := startDaemon(t, topo, conf)
	noted := func() []string {
		b, _ := os.ReadFile(notes)
		lines := strings.Fields(string(b))
		slices.Sort(lines)
		return lines
	}
	waitNoted := func(want ...string) {
		t.Helper()
		waitFor(t, 10*time.Second, fmt.Sprintf("rs1's notify scripts to have run %v", want), func() (bool, string) {
			got := noted()
			return slices.Equal(got, want), fmt.Sprint(got)
		})
	}

	rs1 := testutil.HostIP4(testutil.RS1).String()
	waitFor(t, 15*time.Second, "rs2 and rs3 to come up, rs1 staying down", func() (bool, string) {
		st, err := d.state()
		if err != nil {
			return false, err.Error()
		}
		up := 0
		for _, s := range st.Services {
			for _, b := range s.Backends {
				switch {
				case b.Addr == rs1 && b.Weight != 0:
					t.Fatalf("%s:%d: rs1 served at weight %d before any check of it passed", s.Addr, s.Port, b.Weight)
				case b.Addr != rs1 && b.Weight == b.ConfigWeight && !b.Unresolved:
					up++
				}
			}
		}
		return up == 2*len(healthServices), fmt.Sprintf("%d backends up", up)
	})
	n := 0
	for _, l := range strings.Split(d.proc.Output(), "\n") {
		if strings.Contains(l, `level=WARN msg="backend down"`) && strings.Contains(l, "alpha: down until its health checks pass") {
			n++
		}
	}
	if n != len(healthServices)*len(realServers) {
		t.Errorf("the daemon logged %d alpha starts, want %d:\n%s", n, len(healthServices)*len(realServers), d.proc.Output())
	}
	if got := noted(); len(got) != 0 {
		t.Errorf("notify scripts ran for the alpha start: %v", got)
	}
	healthToggle(t, procs[testutil.RS1], testutil.RS1, true)
	healthWaitConfigured(t, d)
	waitNoted(fmt.Sprintf("up-%d", echoPort), fmt.Sprintf("up-%d", httpPort))
	healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	waitNoted(fmt.Sprintf("down-%d", echoPort), fmt.Sprintf("down-%d", httpPort), fmt.Sprintf("up-%d", echoPort), fmt.Sprintf("up-%d", httpPort))
}
