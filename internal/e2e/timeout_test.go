package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// The UDP timeout the test sets, and how often the clients that must stay
// send: far apart, so that a slow spell of a shared machine cannot make a
// frequent sender look idle, nor an idle one frequent.
const (
	udpTimeout = 5 * time.Second
	udpOften   = time.Second
	udpIdle    = 2 * udpTimeout
)

// TestUDPTimeoutDrains: a UDP client that keeps its source port and sends
// less often than the UDP timeout returns to a drained backend no more:
// its entry expired, as IPVS's connection would (the program no longer
// follows it, and the sweep deletes it), so its next datagram is
// scheduled afresh, to a backend that serves. A client that sends more
// often than the timeout stays on the drained backend, as does an open
// TCP connection there.
func TestUDPTimeoutDrains(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	startUDPEcho(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	stage := func(w map[string]int) string {
		return keepalivedConf(
			virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "UDP", Reals: reals(w)},
			virtualServer{VIP: testutil.VIP4, Port: httpPort, Proto: "TCP", Reals: reals(w)},
		)
	}
	writeFile(t, conf, stage(map[string]int{testutil.RS1: 1, testutil.RS2: 1}))
	d := startDaemonWith(t, topo, conf, "--timeouts", "udp="+udpTimeout.String())

	// Clients, each on a source port of its own, until one backend has
	// two of them: that one will be drained.
	byBackend := map[string][]*udpClient{}
	var drained string
	for i := 0; drained == "" && i < 32; i++ {
		c := newUDPClient(t, topo)
		be := d.udpTo(t, c, "first datagram")
		byBackend[be] = append(byBackend[be], c)
		if len(byBackend[be]) == 2 {
			drained = be
		}
	}
	if drained == "" {
		t.Fatalf("32 clients and no backend with two of them: %v", byBackend)
	}
	other := testutil.RS1
	if drained == other {
		other = testutil.RS2
	}
	often, idle := byBackend[drained][0], byBackend[drained][1]
	tcp := openHTTPOn(t, topo, drained)
	t.Logf("drain %s; client %s sends every %v, %s waits %v; an HTTP connection to %s stays open",
		drained, often.local(), udpOften, idle.local(), udpIdle, drained)

	writeFile(t, conf, stage(map[string]int{drained: 0, other: 1}))
	d.xlb(t, "reload")
	start := time.Now()
	for time.Since(start) < udpIdle {
		if be := d.udpTo(t, often, "datagram while draining"); be != drained {
			t.Errorf("client %s, sending every %v, moved from the drained %s to %s", often.local(), udpOften, drained, be)
		}
		if got := tcp.get(t); got != drained {
			t.Errorf("the HTTP connection was answered by %s, want the drained %s", got, drained)
		}
		time.Sleep(udpOften)
	}
	if be := d.udpTo(t, idle, "datagram after the timeout"); be != other {
		t.Errorf("client %s, silent for %v (timeout %v), went to %s, want %s: the drained backend kept it", idle.local(), udpIdle, udpTimeout, be, other)
	}
	if be := d.udpTo(t, often, "datagram after the drain"); be != drained {
		t.Errorf("client %s moved from the drained %s to %s", often.local(), drained, be)
	}
	if got := tcp.get(t); got != drained {
		t.Errorf("the HTTP connection was answered by %s, want the drained %s", got, drained)
	}
}

// udpClient is a connected UDP socket from the client to VIP:echo: one
// source port for its whole life.
type udpClient struct {
	c   *net.UDPConn
	seq int
}

func newUDPClient(tb testing.TB, topo *testutil.Topology) *udpClient {
	tb.Helper()
	var c *net.UDPConn
	err := topo.Do(testutil.Client, func() error {
		var err error
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(testutil.VIP4, echoPort)))
		return err
	})
	if err != nil {
		tb.Fatalf("UDP client: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return &udpClient{c: c}
}

func (u *udpClient) local() string { return u.c.LocalAddr().String() }

// echo sends a datagram and waits for it to come back, retrying a lost
// one a few times.
func (u *udpClient) echo(tb testing.TB) {
	tb.Helper()
	u.seq++
	msg := fmt.Appendf(nil, "%s %d", u.local(), u.seq)
	buf := make([]byte, 256)
	for range 3 {
		if _, err := u.c.Write(msg); err != nil {
			tb.Fatalf("UDP client %s: %v", u.local(), err)
		}
		_ = u.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := u.c.Read(buf)
		if err == nil && string(buf[:n]) == string(msg) {
			return
		}
	}
	tb.Fatalf("UDP client %s: no echo of %q", u.local(), msg)
}

// udpTo sends one datagram from c and returns the real server it reached,
// by the one backend of the UDP service whose packet count moved.
func (d *daemon) udpTo(tb testing.TB, c *udpClient, what string) string {
	tb.Helper()
	count := func() map[string]uint64 {
		out := map[string]uint64{}
		svc := findService(d.mustState(tb), testutil.VIP4, echoPort)
		if svc == nil {
			tb.Fatalf("%s: no UDP service at %s:%d", what, testutil.VIP4, echoPort)
		}
		for _, b := range svc.Backends {
			out[b.Addr] = b.Stats.InPkts
		}
		return out
	}
	before := count()
	c.echo(tb)
	after := count()
	var got []string
	for addr, n := range after {
		if n != before[addr] {
			got = append(got, addr)
		}
	}
	if len(got) != 1 {
		tb.Fatalf("%s from %s: backends whose counters moved: %v", what, c.local(), got)
	}
	for _, rs := range realServers {
		if testutil.HostIP4(rs).String() == got[0] {
			return rs
		}
	}
	tb.Fatalf("%s from %s: reached %s, not a real server", what, c.local(), got[0])
	return ""
}

// httpConn is a kept-alive HTTP connection to VIP:80 whose answers name
// the real server.
type httpConn struct {
	c net.Conn
	r *bufio.Reader
}

// openHTTPOn opens HTTP connections until one lands on rs, and keeps it.
func openHTTPOn(tb testing.TB, topo *testutil.Topology, rs string) *httpConn {
	tb.Helper()
	for range 64 {
		c, err := dial(topo, testutil.Client, netip.AddrPortFrom(testutil.VIP4, httpPort))
		if err != nil {
			tb.Fatal(err)
		}
		h := &httpConn{c: c, r: bufio.NewReader(c)}
		if h.get(tb) == rs {
			tb.Cleanup(func() { c.Close() })
			return h
		}
		c.Close()
	}
	tb.Fatalf("no HTTP connection of 64 reached %s", rs)
	return nil
}

// get sends a request on the connection and returns who answered.
func (h *httpConn) get(tb testing.TB) string {
	tb.Helper()
	_ = h.c.SetDeadline(time.Now().Add(echoIOTimeout))
	if _, err := fmt.Fprintf(h.c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", testutil.VIP4); err != nil {
		tb.Fatalf("HTTP connection %s: %v", h.c.LocalAddr(), err)
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		tb.Fatalf("HTTP connection %s: %v", h.c.LocalAddr(), err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		tb.Fatalf("HTTP connection %s: %v", h.c.LocalAddr(), err)
	}
	name, _, _ := strings.Cut(strings.TrimSpace(string(body)), " ")
	return name
}
