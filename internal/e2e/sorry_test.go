package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// sorryConf is a web service over rs1 and rs2, drained on failure, with
// rs3 as its sorry_server.
func sorryConf(h healthSettings) string {
	conf := fmt.Sprintf("virtual_server %s %d {\n    delay_loop %d\n    lvs_sched wrr\n    lvs_method DR\n    protocol TCP\n    sorry_server %s %d\n",
		testutil.VIP4, httpPort, int(h.delayLoop/time.Second), testutil.HostIP4(testutil.RS3), httpPort)
	for _, rs := range []string{testutil.RS1, testutil.RS2} {
		conf += fmt.Sprintf("    real_server %s %d {\n        weight 1\n        inhibit_on_failure\n        TCP_CHECK {\n            connect_timeout %d\n            retry %d\n            delay_before_retry %d\n        }\n    }\n",
			testutil.HostIP4(rs), httpPort, int(h.connectTimeout/time.Second), h.retry, int(h.retryDelay[healthTCP]/time.Second))
	}
	return conf + "}\n"
}

// TestSorryServer fails every real server of a service: new connections
// go to the sorry_server, which `xlb list` shows while it serves, with the
// failed servers drained at weight 0; once one real server answers again
// the sorry server leaves the table.
func TestSorryServer(t *testing.T) {
	h := healthFast
	topo := newTopology(t)
	procs := startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, sorryConf(h))
	d := startDaemon(t, topo, conf)

	waitListing := func(what string, want map[string]line) {
		t.Helper()
		waitSorryListing(t, d, what, want)
	}
	rs1, rs2, rs3 := testutil.HostIP4(testutil.RS1).String(), testutil.HostIP4(testutil.RS2).String(), testutil.HostIP4(testutil.RS3).String()

	waitListing("both real servers up, no sorry server", map[string]line{rs1: {1, false}, rs2: {1, false}})
	// Past the startup rule (one failure takes a server out before its
	// first verdict), as the other health tests.
	time.Sleep(h.delayLoop + h.connectTimeout)

	healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	healthToggle(t, procs[testutil.RS2], testutil.RS2, false)
	waitListing("the sorry server to take over", map[string]line{rs1: {0, false}, rs2: {0, false}, rs3: {1, true}})
	for i := range 5 {
		a, err := httpGet(topo, testutil.Client)
		if err != nil {
			t.Fatalf("request %d with every real server down: %v", i, err)
		}
		if a.Server != testutil.RS3 {
			t.Fatalf("request %d with every real server down answered by %s, want the sorry server rs3", i, a.Server)
		}
	}

	healthToggle(t, procs[testutil.RS2], testutil.RS2, true)
	waitListing("rs2 back, the sorry server gone", map[string]line{rs1: {0, false}, rs2: {1, false}})
	for i := range 5 {
		a, err := httpGet(topo, testutil.Client)
		if err != nil {
			t.Fatalf("request %d after rs2's return: %v", i, err)
		}
		if a.Server != testutil.RS2 {
			t.Fatalf("request %d after rs2's return answered by %s, want rs2, the only real server up", i, a.Server)
		}
	}
}

// line is a backend of the sorry tests' listing: its weight, and whether
// it is the sorry server.
type line struct {
	weight uint32
	sorry  bool
}

// waitSorryListing waits until `xlb list` shows want for the web service.
func waitSorryListing(t *testing.T, d *daemon, what string, want map[string]line) {
	t.Helper()
	listing := func() (map[string]line, error) {
		st, err := d.state()
		if err != nil {
			return nil, err
		}
		s := findService(st, testutil.VIP4, httpPort)
		if s == nil {
			return nil, fmt.Errorf("no service %s:%d", testutil.VIP4, httpPort)
		}
		out := map[string]line{}
		for _, b := range s.Backends {
			if b.Unresolved {
				return nil, fmt.Errorf("backend %s unresolved", b.Addr)
			}
			out[b.Addr] = line{b.Weight, b.Sorry}
		}
		return out, nil
	}
	waitFor(t, 15*time.Second, what, func() (bool, string) {
		got, err := listing()
		if err != nil {
			return false, err.Error()
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("listing %v, want %v", got, want)
	})
}

// TestSorryQuorum gives the sorry test's service quorum 2 with
// quorum_up and quorum_down scripts: one real server failing of two
// loses the quorum, so the sorry server takes new connections and the
// server still up is drained with the failed one; its return regains
// the quorum. Each change runs its script once, and with omega stopping
// xlb runs quorum_down.
func TestSorryQuorum(t *testing.T) {
	h := healthFast
	topo := newTopology(t)
	procs := startRealServers(t, topo)
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes")
	// It takes a moment, so that omega's wait for it shows at shutdown.
	script := testutil.WriteFile(t, filepath.Join(dir, "quorum.sh"), fmt.Sprintf("#!/bin/sh\nsleep 0.5\necho \"$1\" >> %s\n", notes), 0o755)
	sorryLine := fmt.Sprintf("    sorry_server %s %d\n", testutil.HostIP4(testutil.RS3), httpPort)
	text := strings.Replace(sorryConf(h), sorryLine,
		fmt.Sprintf("%s    quorum 2\n    quorum_up \"%s up\"\n    quorum_down \"%s down\"\n    omega\n", sorryLine, script, script), 1)
	conf := filepath.Join(dir, "keepalived.conf")
	writeFile(t, conf, text)
	d := startDaemon(t, topo, conf)
	noted := func() string {
		b, _ := os.ReadFile(notes)
		return strings.Join(strings.Fields(string(b)), " ")
	}
	rs1, rs2, rs3 := testutil.HostIP4(testutil.RS1).String(), testutil.HostIP4(testutil.RS2).String(), testutil.HostIP4(testutil.RS3).String()

	waitSorryListing(t, d, "both real servers up, no sorry server", map[string]line{rs1: {1, false}, rs2: {1, false}})
	time.Sleep(h.delayLoop + h.connectTimeout)
	if got := noted(); got != "" {
		t.Fatalf("quorum scripts ran with the quorum held from the start: %q", got)
	}

	healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	waitSorryListing(t, d, "the quorum lost: the sorry server serves, rs2 drained too", map[string]line{rs1: {0, false}, rs2: {0, false}, rs3: {1, true}})
	a, err := httpGet(topo, testutil.Client)
	if err != nil || a.Server != testutil.RS3 {
		t.Errorf("a request with the quorum lost: %+v, %v; want the sorry server rs3", a, err)
	}
	waitFor(t, 10*time.Second, "quorum_down to run", func() (bool, string) { return noted() == "down", noted() })

	healthToggle(t, procs[testutil.RS1], testutil.RS1, true)
	waitSorryListing(t, d, "the quorum regained, the sorry server gone", map[string]line{rs1: {1, false}, rs2: {1, false}})
	waitFor(t, 10*time.Second, "quorum_up to run", func() (bool, string) { return noted() == "down up", noted() })

	// omega: stopping with the quorum held runs quorum_down, before the
	// daemon exits.
	d.checkStop(t)
	if got := noted(); got != "down up down" {
		t.Errorf("scripts after the daemon stopped: %q, want quorum_down run once more by omega", got)
	}
}
