package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/testutil"
)

// metricsAddr is where the ops tests' daemons serve /metrics, inside
// lb1's namespace.
const metricsAddr = "127.0.0.1:9469"

// fetchIn GETs path from addr inside host's namespace: the connection is
// opened there (net/http's own dialer would run on another thread, in the
// test's namespace).
func fetchIn(topo *testutil.Topology, host, addr, path string) (string, error) {
	var c net.Conn
	if err := topo.Do(host, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body), nil
}

// scrape is one scrape of the daemon in lb1: every sample by its series
// (name{labels}).
func scrape(tb testing.TB, topo *testutil.Topology) map[string]float64 {
	tb.Helper()
	body, err := fetchIn(topo, testutil.LB1, metricsAddr, "/metrics")
	if err != nil {
		tb.Fatalf("scrape: %v", err)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			tb.Fatalf("scrape: line %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}

func backendSeries(name string, port uint16, rs string) string {
	return fmt.Sprintf(`%s{service="%s:%d/tcp",backend="%s:%d"}`, name, testutil.VIP4, port, testutil.HostIP4(rs), port)
}

// TestMetricsFollowTraffic: HTTP requests through the VIP raise the
// service's and the backends' counters in a scrape, and a failed health
// check flips the backend's xlb_backend_up.
func TestMetricsFollowTraffic(t *testing.T) {
	topo := newTopology(t)
	procs := startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, healthConf(healthFast, true))
	d := startDaemon(t, topo, conf, "--metrics", metricsAddr)
	healthWaitConfigured(t, d)

	svc := fmt.Sprintf(`{service="%s:%d/tcp"}`, testutil.VIP4, httpPort)
	before := scrape(t, topo)
	if _, ok := before["xlb_service_packets_total"+svc]; !ok {
		t.Fatalf("no xlb_service_packets_total%s in the scrape", svc)
	}
	const n = 30
	served := httpSpread(t, topo, n)
	after := scrape(t, topo)
	// A request over a new connection is at least SYN, request, ACK of
	// the answer and FIN from the client.
	if got := after["xlb_service_packets_total"+svc] - before["xlb_service_packets_total"+svc]; got < 4*n {
		t.Errorf("xlb_service_packets_total rose by %v over %d requests, want at least %d", got, n, 4*n)
	}
	if got := after["xlb_service_flows_total"+svc] - before["xlb_service_flows_total"+svc]; got != n {
		t.Errorf("xlb_service_flows_total rose by %v, want %d (one per connection)", got, n)
	}
	for _, rs := range realServers {
		key := backendSeries("xlb_backend_flows_total", httpPort, rs)
		if got := after[key] - before[key]; got != float64(served[rs]) {
			t.Errorf("%s rose by %v, %s answered %d requests", key, got, rs, served[rs])
		}
		if got := after[backendSeries("xlb_backend_bytes_total", httpPort, rs)] - before[backendSeries("xlb_backend_bytes_total", httpPort, rs)]; served[rs] > 0 && got <= 0 {
			t.Errorf("xlb_backend_bytes_total of %s did not rise", rs)
		}
	}
	for _, name := range []string{"xlb_build_info", "xlb_flow_table_capacity", `xlb_reloads_total{result="success"}`} {
		found := false
		for k := range after {
			found = found || strings.HasPrefix(k, name)
		}
		if !found {
			t.Errorf("no %s in the scrape", name)
		}
	}

	up := backendSeries("xlb_backend_up", httpPort, testutil.RS1)
	if after[up] != 1 {
		t.Fatalf("%s = %v before the failure, want 1", up, after[up])
	}
	healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	waitFor(t, 3*healthFast.detectBound(healthHTTP)+healthSlack, "xlb_backend_up of rs1 to turn 0", func() (bool, string) {
		v := scrape(t, topo)[up]
		return v == 0, fmt.Sprintf("%s = %v", up, v)
	})
	if m := scrape(t, topo); m[backendSeries("xlb_backend_weight", httpPort, testutil.RS1)] != 0 {
		t.Errorf("rs1 is down with inhibit_on_failure but xlb_backend_weight is %v", m[backendSeries("xlb_backend_weight", httpPort, testutil.RS1)])
	}
	healthToggle(t, procs[testutil.RS1], testutil.RS1, true)
	waitFor(t, 3*healthFast.recoverBound(healthHTTP)+healthSlack, "xlb_backend_up of rs1 to return to 1", func() (bool, string) {
		v := scrape(t, topo)[up]
		return v == 1, fmt.Sprintf("%s = %v", up, v)
	})
}

// TestDrainWait: `xlb drain rs1 --wait` under 20 long-lived connections
// returns only once they have closed, no new connection reaches rs1
// meanwhile and none breaks; the drain is listed as an override, survives
// `xlb reload` and a daemon restart, and `xlb undrain` brings rs1 back.
func TestDrainWait(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	all := map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1}
	conf := keepalivedConf(
		virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP", Reals: reals(all)},
		virtualServer{VIP: testutil.VIP4, Port: httpPort, Proto: "TCP", Reals: reals(all)})
	resetsBefore := tcpCounters(t, topo, testutil.Client)
	d := startLB(t, topo, testutil.LB1, conf)
	rs1 := testutil.HostIP4(testutil.RS1).String()

	pool := startEchoPool(t, topo, 20)
	pool.progress(t, "connecting", 3)
	// The counts are the background sweep's: wait for a pass that saw
	// every connection.
	waitFor(t, 10*time.Second, "the sweep to count the 20 connections", func() (bool, string) {
		s := findService(d.mustState(t), testutil.VIP4, echoPort)
		return s != nil && s.ActiveConn == 20, fmt.Sprintf("%+v", s)
	})
	echo := findBackend(findService(d.mustState(t), testutil.VIP4, echoPort), testutil.HostIP4(testutil.RS1))
	if echo == nil || echo.ActiveConn == 0 {
		t.Fatalf("no echo connection landed on rs1 (%+v): nothing to drain", echo)
	}
	t.Logf("%d of 20 connections on rs1", echo.ActiveConn)

	drain := exec.Command(d.bin, "drain", rs1, "--wait", "--timeout", "120s", "--interval", "200ms", "--socket", d.socket)
	var drainOut strings.Builder
	drain.Stdout, drain.Stderr = &drainOut, &drainOut
	if err := drain.Start(); err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() { drained <- drain.Wait() }()
	t.Cleanup(func() { _ = drain.Process.Kill() })

	// The drain is in force once listed; the connections carry on and no
	// new one reaches rs1.
	waitFor(t, 10*time.Second, "rs1 listed as drained", func() (bool, string) {
		out := d.xlb(t, "list")
		return strings.Contains(out, "override: drained"), out
	})
	if served := httpSpread(t, topo, 30); served[testutil.RS1] != 0 {
		t.Errorf("new connections reached drained rs1: %v", served)
	}
	pool.progress(t, "the drain", 5)
	select {
	case err := <-drained:
		t.Fatalf("xlb drain --wait returned while rs1 still carried connections: %v\n%s", err, drainOut.String())
	default:
	}

	for i, err := range pool.stop() {
		if err != nil {
			t.Errorf("connection %d broke: %v", i, err)
		}
	}
	select {
	case err := <-drained:
		if err != nil || !strings.Contains(drainOut.String(), "drained") {
			t.Fatalf("xlb drain --wait: %v\n%s", err, drainOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("xlb drain --wait still waiting 30 s after every connection closed:\n%s", drainOut.String())
	}
	if diff := cmp.Diff(resetsBefore, tcpCounters(t, topo, testutil.Client)); diff != "" {
		t.Errorf("client's TCP reset counters moved (-before +after):\n%s", diff)
	}

	// The override survives a reload and a restart, and the restarted
	// daemon still sends rs1 nothing new.
	drainedListed := func(when string) {
		t.Helper()
		for _, port := range []uint16{echoPort, httpPort} {
			b := findBackend(findService(d.mustState(t), testutil.VIP4, port), testutil.HostIP4(testutil.RS1))
			if b == nil || b.Override != "drained" || b.Weight != 0 {
				t.Errorf("after %s, rs1 in service port %d is %+v, want drained at weight 0", when, port, b)
			}
		}
	}
	d.xlb(t, "reload")
	drainedListed("xlb reload")
	d.stop(t)
	d = startLB(t, topo, testutil.LB1, conf)
	drainedListed("a daemon restart")
	if served := httpSpread(t, topo, 30); served[testutil.RS1] != 0 {
		t.Errorf("after the restart new connections reached drained rs1: %v", served)
	}

	d.xlb(t, "undrain", rs1)
	waitFor(t, 10*time.Second, "rs1 to serve new connections again", func() (bool, string) {
		served := httpSpread(t, topo, 30)
		return served[testutil.RS1] > 0, fmt.Sprint(served)
	})
	if out := d.xlb(t, "list"); strings.Contains(out, "override") {
		t.Errorf("an override is still listed after undrain:\n%s", out)
	}

	// A reload that removes rs1 drops its override: added back, it serves
	// at its configured weight.
	d.xlb(t, "drain", rs1)
	two := map[string]int{testutil.RS2: 1, testutil.RS3: 1}
	writeFile(t, d.conf, keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: httpPort, Proto: "TCP", Reals: reals(two)}))
	d.xlb(t, "reload")
	writeFile(t, d.conf, keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: httpPort, Proto: "TCP", Reals: reals(all)}))
	d.xlb(t, "reload")
	if b := findBackend(findService(d.mustState(t), testutil.VIP4, httpPort), testutil.HostIP4(testutil.RS1)); b == nil || b.Override != "" || b.Weight != 1 {
		t.Errorf("rs1 removed and added back by reloads is %+v, want weight 1 and no override", b)
	}
	// Bad input changes nothing and says which field.
	if _, errOut, code, _ := d.run("weight", "198.51.100.250", "3"); code == 0 || !strings.Contains(errOut, "server: 198.51.100.250 is not a real server") {
		t.Errorf("xlb weight of an unknown server: exit %d: %s", code, errOut)
	}
}

// TestSlowStart: a real server that comes back up in a service with
// slow_start ramps: listed first at a fraction of the others' (scaled)
// weights, then at its configured weight once the window has passed.
func TestSlowStart(t *testing.T) {
	topo := newTopology(t)
	procs := startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	writeFile(t, conf, strings.ReplaceAll(healthConf(healthFast, true), "    delay_loop 1\n", "    delay_loop 1\n    slow_start 4\n"))
	d := startDaemon(t, topo, conf)
	healthWaitConfigured(t, d)
	rs1 := testutil.HostIP4(testutil.RS1)
	weights := func() (rs1w, rs2w uint32) {
		s := findService(d.mustState(t), testutil.VIP4, echoPort)
		b1, b2 := findBackend(s, rs1), findBackend(s, testutil.HostIP4(testutil.RS2))
		if b1 == nil || b2 == nil {
			t.Fatalf("rs1 or rs2 not listed: %+v", s)
		}
		return b1.Weight, b2.Weight
	}

	healthToggle(t, procs[testutil.RS1], testutil.RS1, false)
	waitFor(t, 3*healthFast.detectBound(healthTCP)+healthSlack, "rs1 down (weight 0)", func() (bool, string) {
		w, _ := weights()
		return w == 0, fmt.Sprintf("rs1 at weight %d", w)
	})
	healthToggle(t, procs[testutil.RS1], testutil.RS1, true)
	// rs1's configured weight is 2, rs2's 1: ramping, rs1 is served below
	// 2 x 10 while rs2 is scaled to 1 x 10.
	waitFor(t, 3*healthFast.recoverBound(healthTCP)+healthSlack, "rs1 to ramp", func() (bool, string) {
		w1, w2 := weights()
		return w1 > 0 && w1 < 20 && w2 == 10, fmt.Sprintf("rs1 %d, rs2 %d", w1, w2)
	})
	waitFor(t, 15*time.Second, "the ramp to end at the configured weights", func() (bool, string) {
		w1, w2 := weights()
		return w1 == 2 && w2 == 1, fmt.Sprintf("rs1 %d, rs2 %d", w1, w2)
	})
	if n := strings.Count(d.proc.Output(), "backend up"); n == 0 {
		t.Errorf("no backend up event logged:\n%s", d.proc.Output())
	}
}
