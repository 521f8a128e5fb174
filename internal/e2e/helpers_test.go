package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/testutil"
)

// realServers are the hosts that run rsserver.
var realServers = []string{testutil.RS1, testutil.RS2, testutil.RS3}

// Ports the real servers serve on and the services forward.
const (
	httpPort = 80
	echoPort = 7
)

// newTopology builds the namespaces with the VIP on lb1 and the XDP_PASS
// program on lb1's bridge port that native XDP_TX on a veth needs.
func newTopology(tb testing.TB) *testutil.Topology {
	tb.Helper()
	testutil.RequireRoot(tb, "builds the namespace topology and attaches XDP")
	obj := filepath.Join(testutil.MustRepoRoot(tb), "internal", "datapath", "xdppass_bpfel.o")
	return testutil.NewTopology(tb, testutil.TopologyOptions{VIPOn: testutil.LB1, XDPPassObj: obj})
}

// startRealServers runs rsserver (HTTP on 80, echo on 7) in rs1..rs3,
// waits until each has bound its listeners, and returns each host's
// process, for tests that signal it.
func startRealServers(tb testing.TB, topo *testutil.Topology) map[string]*testutil.Proc {
	tb.Helper()
	return startRealServersOn(tb, topo, realServers...)
}

// startRealServersOn is startRealServers on the given hosts.
func startRealServersOn(tb testing.TB, topo *testutil.Topology, hosts ...string) map[string]*testutil.Proc {
	tb.Helper()
	bin := testutil.BuildBinary(tb, "./internal/testutil/cmd/rsserver")
	procs := map[string]*testutil.Proc{}
	for _, rs := range hosts {
		procs[rs] = topo.Start(tb, rs, bin, "-name", rs, "-http", fmt.Sprintf(":%d", httpPort), "-echo", fmt.Sprintf(":%d", echoPort))
	}
	for _, rs := range hosts {
		waitReady(tb, procs[rs], "rsserver in "+rs)
	}
	return procs
}

// waitReady waits until p, a test server, says "ready", and fails the
// test at once if it exits first.
func waitReady(tb testing.TB, p *testutil.Proc, what string) {
	tb.Helper()
	waitFor(tb, 10*time.Second, what+" to be ready", func() (bool, string) {
		select {
		case <-p.Done():
			tb.Fatalf("%s exited:\n%s", what, p.Output())
		default:
		}
		return strings.Contains(p.Output(), "ready"), p.Output()
	})
}

// daemon is an `xlb run` in lb1 with its own pin directory and socket.
type daemon struct {
	topo   *testutil.Topology
	bin    string
	conf   string
	socket string
	pins   string
	proc   *testutil.Proc
	// stopped is set once checkStop has run.
	stopped bool
}

// startDaemon runs `xlb run -f conf` on lb1's eth0 in native XDP mode and
// waits until it answers on its socket with every backend resolved. At
// cleanup it checks that SIGTERM made the daemon exit cleanly, detach and
// remove its pins. args are more flags for xlb run; its state directory
// is the test's own.
func startDaemon(tb testing.TB, topo *testutil.Topology, conf string, args ...string) *daemon {
	tb.Helper()
	return startDaemonWith(tb, topo, conf, args...)
}

// startDaemonWith is startDaemon with more `xlb run` arguments.
func startDaemonWith(tb testing.TB, topo *testutil.Topology, conf string, args ...string) *daemon {
	tb.Helper()
	dir := tb.TempDir()
	// A bpffs of the daemon's own: a parallel test or the demo pinning
	// under /sys/fs/bpf cannot collide with it. nsenter --net keeps this
	// mount namespace, so the mount is the daemon's too.
	fs := testutil.MountBPFFS(tb)
	d := &daemon{
		topo:   topo,
		bin:    testutil.BuildBinary(tb, "./cmd/xlb"),
		conf:   conf,
		socket: filepath.Join(dir, "xlb.sock"),
		pins:   filepath.Join(fs, "xlb"),
	}
	d.proc = topo.StartNet(tb, testutil.LB1, append([]string{d.bin, "run", "-f", conf, "-i", "eth0",
		"--xdp-mode", "native", "--bpffs", d.pins, "--socket", d.socket, "--state-dir", dir}, args...)...)
	// Registered after StartNet's own cleanup, so it runs first and sees
	// the daemon's exit status.
	tb.Cleanup(func() { d.checkStop(tb) })

	d.waitServing(tb, "xlb run")
	return d
}

// waitServing waits until the daemon answers on its socket with every
// backend resolved; who names it in failures.
func (d *daemon) waitServing(tb testing.TB, who string) {
	tb.Helper()
	waitFor(tb, 60*time.Second, who+" to serve with every backend resolved", func() (bool, string) {
		select {
		case <-d.proc.Done():
			tb.Fatalf("%s exited:\n%s", who, d.proc.Output())
		default:
		}
		if _, err := os.Stat(d.socket); err != nil {
			return false, err.Error()
		}
		st, err := d.state()
		if err != nil {
			return false, err.Error()
		}
		for _, s := range st.Services {
			for _, b := range s.Backends {
				if b.Unresolved {
					return false, fmt.Sprintf("backend %s of %s:%d unresolved", b.Addr, s.Addr, s.Port)
				}
			}
		}
		return true, ""
	})
}

// checkStop stops the daemon with `xlb stop` and checks it went the way
// that promises: a clean exit, no XDP program, no pin left.
func (d *daemon) checkStop(tb testing.TB) {
	if d.stopped {
		return
	}
	d.stopped = true
	select {
	case <-d.proc.Done():
		tb.Errorf("xlb run exited before xlb stop:\n%s", d.proc.Output())
		return
	default:
	}
	if out, errOut, code, err := d.run("stop"); err != nil || code != 0 {
		tb.Errorf("xlb stop: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	select {
	case <-d.proc.Done():
	case <-time.After(10 * time.Second):
		tb.Errorf("xlb run still running 10 s after xlb stop returned")
	}
	if err := d.proc.Stop(); err != nil {
		tb.Errorf("xlb run did not exit cleanly on xlb stop: %v\n%s", err, d.proc.Output())
		return
	}
	if _, err := os.Stat(d.pins); !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("pin directory %s is still there after the daemon stopped (stat: %v)", d.pins, err)
	}
	out, err := exec.Command("ip", "-n", d.topo.NS(testutil.LB1), "link", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		tb.Errorf("ip link show in lb1: %v\n%s", err, out)
	} else if bytes.Contains(out, []byte("xdp")) {
		tb.Errorf("lb1's eth0 still has an XDP program after the daemon stopped:\n%s", out)
	}
}

// xlbTimeout bounds one xlb client command.
const xlbTimeout = 60 * time.Second

// run runs an xlb client command against the daemon's socket and returns
// its stdout, its stderr and its exit status.
func (d *daemon) run(args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), xlbTimeout)
	defer cancel()
	args = append(args, "--socket", d.socket)
	c := exec.CommandContext(ctx, d.bin, args...)
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return o.String(), e.String(), ee.ExitCode(), nil
	}
	if err != nil {
		return o.String(), e.String(), -1, fmt.Errorf("xlb %s: %w\n%s", strings.Join(args, " "), err, e.Bytes())
	}
	return o.String(), e.String(), 0, nil
}

// xlb runs an xlb client command that must succeed and returns its stdout.
func (d *daemon) xlb(tb testing.TB, args ...string) string {
	tb.Helper()
	out, errOut, code, err := d.run(args...)
	if err != nil {
		tb.Fatal(err)
	}
	if code != 0 {
		tb.Fatalf("xlb %s: exit status %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// state is `xlb list --json`.
func (d *daemon) state() (api.State, error) {
	out, errOut, code, err := d.run("list", "--json")
	if err != nil {
		return api.State{}, err
	}
	if code != 0 {
		return api.State{}, fmt.Errorf("xlb list --json: exit status %d: %s", code, errOut)
	}
	var st api.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return api.State{}, fmt.Errorf("xlb list --json: %w\n%s", err, out)
	}
	return st, nil
}

func (d *daemon) mustState(tb testing.TB) api.State {
	tb.Helper()
	st, err := d.state()
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// signal sends sig to the xlb process itself: nsenter exec'd it, so the
// process the test started is the daemon.
func (d *daemon) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := d.proc.Cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal %v to xlb run: %v", sig, err)
	}
}

// findService returns the service addr:port of st, or nil.
func findService(st api.State, addr netip.Addr, port uint16) *api.Service {
	for i, s := range st.Services {
		if s.Addr == addr.String() && s.Port == port {
			return &st.Services[i]
		}
	}
	return nil
}

// findBackend returns backend addr of s, or nil.
func findBackend(s *api.Service, addr netip.Addr) *api.Backend {
	if s == nil {
		return nil
	}
	for i, b := range s.Backends {
		if b.Addr == addr.String() {
			return &s.Backends[i]
		}
	}
	return nil
}

// waitFor polls cond until it holds, failing the test with cond's last
// word after timeout. Conditions, not sleeps, pace the tests.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s: %s", timeout, what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// virtualServer is one virtual_server block of a generated keepalived.conf.
type virtualServer struct {
	VIP   netip.Addr
	Port  uint16
	Proto string // "TCP" or "UDP"
	Reals []realServer
}

// realServer is a real_server of a virtualServer; its port is the
// service's, as direct routing requires.
type realServer struct {
	Addr   netip.Addr
	Weight int
}

// keepalivedConf writes services as keepalived.conf, the format most users
// bring, one statement per line.
func keepalivedConf(services ...virtualServer) string {
	var b strings.Builder
	b.WriteString("! generated by xlb's end-to-end tests\n")
	for _, s := range services {
		fmt.Fprintf(&b, "virtual_server %s %d {\n    lvs_sched wrr\n    lvs_method DR\n    protocol %s\n", s.VIP, s.Port, s.Proto)
		for _, r := range s.Reals {
			fmt.Fprintf(&b, "    real_server %s %d {\n        weight %d\n    }\n", r.Addr, s.Port, r.Weight)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// writeFile writes content to path, failing the test on error. The
// daemon reads the file whole, so a rename is not needed for atomicity:
// nothing reads it until the test asks for a reload.
func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// lineOf returns the 1-based number of the first line of content that
// contains s.
func lineOf(tb testing.TB, content, s string) int {
	tb.Helper()
	for i, l := range strings.Split(content, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	tb.Fatalf("no line contains %q", s)
	return 0
}

// dial opens a TCP connection from host. The socket is created in host's
// namespace and stays there, whichever goroutine uses it afterwards.
func dial(topo *testutil.Topology, host string, to netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := topo.Do(host, func() error {
		var err error
		c, err = net.DialTimeout("tcp", to.String(), 5*time.Second)
		return err
	})
	return c, err
}

// answer is what rsserver says to an HTTP request: its name and the
// client address it saw.
type answer struct {
	Server string
	Peer   netip.AddrPort // as the real server saw it
	Local  netip.AddrPort // the client's side of the connection
}

// httpGet sends one HTTP request over a new connection from host to the
// VIP and returns rsserver's answer.
func httpGet(topo *testutil.Topology, host string) (answer, error) {
	return httpGetVIP(topo, host, testutil.VIP4)
}

// httpGetVIP is httpGet to the given VIP.
func httpGetVIP(topo *testutil.Topology, host string, addr netip.Addr) (answer, error) {
	vip := netip.AddrPortFrom(addr, httpPort)
	c, err := dial(topo, host, vip)
	if err != nil {
		return answer{}, fmt.Errorf("connect to %s: %w", vip, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return answer{}, err
	}
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", vip); err != nil {
		return answer{}, fmt.Errorf("send request to %s: %w", vip, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return answer{}, fmt.Errorf("read answer from %s: %w", vip, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return answer{}, fmt.Errorf("read answer from %s: %w", vip, err)
	}
	if resp.StatusCode != http.StatusOK {
		return answer{}, fmt.Errorf("%s answered %s: %s", vip, resp.Status, body)
	}
	name, peer, ok := strings.Cut(strings.TrimSpace(string(body)), " ")
	if !ok {
		return answer{}, fmt.Errorf("%s answered %q, want NAME ADDR:PORT", vip, body)
	}
	a := answer{Server: name, Local: c.LocalAddr().(*net.TCPAddr).AddrPort()}
	if a.Peer, err = netip.ParseAddrPort(peer); err != nil {
		return answer{}, fmt.Errorf("%s answered %q: %w", vip, body, err)
	}
	a.Local = netip.AddrPortFrom(a.Local.Addr().Unmap(), a.Local.Port())
	return a, nil
}

// httpSpread sends n requests from the client, each on a new connection,
// and counts the answers by real server.
func httpSpread(tb testing.TB, topo *testutil.Topology, n int) map[string]int {
	tb.Helper()
	got := map[string]int{}
	for i := range n {
		a, err := httpGet(topo, testutil.Client)
		if err != nil {
			tb.Fatalf("request %d: %v", i, err)
		}
		if a.Peer != a.Local || a.Peer.Addr() != testutil.HostIP4(testutil.Client) {
			tb.Errorf("request %d: %s saw the client as %s, want the client's own %s (direct routing keeps the source)", i, a.Server, a.Peer, a.Local)
		}
		got[a.Server]++
	}
	return got
}

// ---- long-lived echo connections ----

// Chunks are up to two segments long, so some rounds need reassembly.
const (
	maxChunk     = 2048
	echoInterval = 50 * time.Millisecond
	// echoIOTimeout bounds one round trip. It covers retransmissions
	// while a backend's new MAC propagates, far below TCP's own give-up.
	echoIOTimeout = 10 * time.Second
)

// echoConn is a long-lived connection through the VIP to an echo server:
// it writes a random chunk every echoInterval and reads it back.
type echoConn struct {
	c      net.Conn
	rounds atomic.Int64
	bytes  atomic.Int64
	done   chan struct{}
	err    error // valid once done is closed
}

func (e *echoConn) run(ctx context.Context, seed uint64) {
	defer close(e.done)
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	rng := rand.New(src)
	out, in := make([]byte, maxChunk), make([]byte, maxChunk)
	// Spread the connections over the interval instead of in lockstep.
	t := time.NewTimer(time.Duration(rng.Int64N(int64(echoInterval))))
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			e.err = e.finish()
			return
		case <-t.C:
		}
		n := 1 + rng.IntN(maxChunk)
		_, _ = src.Read(out[:n])
		if err := e.c.SetDeadline(time.Now().Add(echoIOTimeout)); err != nil {
			e.err = err
			return
		}
		if _, err := e.c.Write(out[:n]); err != nil {
			e.err = fmt.Errorf("round %d: write %d bytes: %w", round, n, err)
			return
		}
		if _, err := io.ReadFull(e.c, in[:n]); err != nil {
			e.err = fmt.Errorf("round %d: read back %d bytes: %w", round, n, err)
			return
		}
		if i := firstDiff(out[:n], in[:n]); i >= 0 {
			e.err = fmt.Errorf("round %d: byte %d of %d came back as %#x, sent %#x", round, i, n, in[i], out[i])
			return
		}
		e.bytes.Add(int64(n))
		e.rounds.Add(1)
		t.Reset(echoInterval)
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// finish ends the connection politely: a half-close, after which the echo
// server has nothing left to send and closes its side.
func (e *echoConn) finish() error {
	defer e.c.Close()
	if err := e.c.SetDeadline(time.Now().Add(echoIOTimeout)); err != nil {
		return err
	}
	if err := e.c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	n, err := io.Copy(io.Discard, e.c)
	if err != nil {
		return fmt.Errorf("close: waiting for the server's FIN: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("close: %d unexpected bytes after the last round", n)
	}
	return nil
}

// echoPool is a set of echoConns running together.
type echoPool struct {
	conns  []*echoConn
	cancel context.CancelFunc
}

// startEchoPool opens n connections from the client to VIP:7 and starts
// echoing on each. The test's cleanup stops them if the test ends early.
func startEchoPool(tb testing.TB, topo *testutil.Topology, n int) *echoPool {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &echoPool{cancel: cancel}
	tb.Cleanup(func() { p.stop() })
	to := netip.AddrPortFrom(testutil.VIP4, echoPort)
	err := topo.Do(testutil.Client, func() error {
		for i := range n {
			c, err := net.DialTimeout("tcp", to.String(), 5*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d to %s: %w", i, to, err)
			}
			p.conns = append(p.conns, &echoConn{c: c, done: make(chan struct{})})
		}
		return nil
	})
	if err != nil {
		for _, e := range p.conns {
			e.c.Close()
			close(e.done)
		}
		p.conns = nil
		tb.Fatal(err)
	}
	for i, e := range p.conns {
		go e.run(ctx, uint64(i))
	}
	return p
}

// progress waits until every connection has completed at least rounds more
// round trips than when it was called: each has carried traffic across
// whatever the test just changed. A connection that failed fails the test.
func (p *echoPool) progress(tb testing.TB, after string, rounds int64) {
	tb.Helper()
	start := make([]int64, len(p.conns))
	for i, e := range p.conns {
		start[i] = e.rounds.Load()
	}
	waitFor(tb, 3*echoIOTimeout, fmt.Sprintf("every connection to echo %d more rounds after %s", rounds, after), func() (bool, string) {
		behind := 0
		for i, e := range p.conns {
			select {
			case <-e.done:
				tb.Fatalf("connection %d (%s) failed after %s: %v", i, e.c.LocalAddr(), after, e.err)
			default:
			}
			if e.rounds.Load() < start[i]+rounds {
				behind++
			}
		}
		return behind == 0, fmt.Sprintf("%d of %d connections behind", behind, len(p.conns))
	})
}

// stopUnbroken stops the pool and fails the test for every connection
// that did not echo every byte, and if the client's TCP reset counters
// moved since resetsBefore (tcpCounters).
func (p *echoPool) stopUnbroken(tb testing.TB, topo *testutil.Topology, resetsBefore map[string]int64) {
	tb.Helper()
	for i, err := range p.stop() {
		if err != nil {
			tb.Errorf("connection %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(resetsBefore, tcpCounters(tb, topo, testutil.Client)); diff != "" {
		tb.Errorf("client's TCP reset counters moved (-before +after):\n%s", diff)
	}
}

// stop ends every connection and returns each one's error, nil for a
// connection that echoed every byte and closed cleanly.
func (p *echoPool) stop() []error {
	p.cancel()
	errs := make([]error, len(p.conns))
	for i, e := range p.conns {
		<-e.done
		errs[i] = e.err
	}
	return errs
}

// ---- packet counting ----

// capture reads every frame that host's eth0 sends or receives, from a
// packet socket, and hands each to fn with its length on the wire and its
// packet type (unix.PACKET_HOST, PACKET_OUTGOING, ...).
type capture struct {
	fd      int
	stopped atomic.Bool
	done    chan struct{}
	err     error
}

func startCapture(tb testing.TB, topo *testutil.Topology, host string, fn func(frame []byte, wireLen int, pktType uint8)) *capture {
	tb.Helper()
	c := &capture{done: make(chan struct{})}
	err := topo.Do(host, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to eth0: %w", err)
		}
		// Room for a burst; drops are counted and reported, never taken
		// for traffic the data path lost.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		tb.Fatalf("capture on %s: %v", host, err)
	}
	tb.Cleanup(func() { c.stop() })
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for !c.stopped.Load() {
			n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				c.err = err
				return
			}
			var pt uint8
			if ll, ok := from.(*unix.SockaddrLinklayer); ok {
				pt = ll.Pkttype
			}
			fn(buf[:min(n, len(buf))], n, pt)
		}
	}()
	return c
}

// stop ends the capture and returns the frames the kernel dropped because
// the reader fell behind.
func (c *capture) stop() (drops uint32, err error) {
	if c.stopped.Swap(true) {
		<-c.done
		return 0, c.err
	}
	<-c.done
	st, serr := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	unix.Close(c.fd)
	if serr != nil {
		return 0, errors.Join(c.err, serr)
	}
	return st.Drops, c.err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens a raw packet socket for sending hand-built frames on
// eth0 of the namespace the caller runs in (see Topology.Do).
func packetSocket() (int, *net.Interface, error) {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return -1, nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("packet socket: %w", err)
	}
	return fd, ifi, nil
}

// ipv4 returns the addresses and protocol of an untagged IPv4 frame.
func ipv4(frame []byte) (src, dst netip.Addr, proto uint8, ok bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != unix.ETH_P_IP || frame[14]>>4 != 4 {
		return netip.Addr{}, netip.Addr{}, 0, false
	}
	ip := frame[14:]
	return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), ip[9], true
}

// tcpCounters reads host's TCP resets from the kernel's own MIB
// (/proc/net/snmp of its namespace): what a reset did, whoever saw it.
func tcpCounters(tb testing.TB, topo *testutil.Topology, host string) map[string]int64 {
	tb.Helper()
	out := topo.Exec(tb, host, "cat", "/proc/net/snmp")
	var names, values []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "Tcp: ") {
			continue
		}
		if names == nil {
			names = strings.Fields(l)[1:]
		} else {
			values = strings.Fields(l)[1:]
		}
	}
	if len(names) == 0 || len(names) != len(values) {
		tb.Fatalf("%s: no Tcp lines in /proc/net/snmp:\n%s", host, out)
	}
	m := map[string]int64{}
	for i, n := range names {
		if n != "EstabResets" && n != "OutRsts" && n != "AttemptFails" {
			continue
		}
		v, err := strconv.ParseInt(values[i], 10, 64)
		if err != nil {
			tb.Fatalf("%s: /proc/net/snmp Tcp %s=%q: %v", host, n, values[i], err)
		}
		m[n] = v
	}
	return m
}

// lockedCounts is a counter map shared with a capture goroutine.
type lockedCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (l *lockedCounts) add(k string, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]int64{}
	}
	l.m[k] += v
}

func (l *lockedCounts) get(k string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[k]
}

func (l *lockedCounts) snapshot() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.m)
}

// dualStackConf writes a keepalived.conf with one service of proto on
// port per VIP family, each served by rs1..rs3 at weight 1, and returns
// its path.
func dualStackConf(tb testing.TB, port uint16, proto string) string {
	tb.Helper()
	var reals6 []realServer
	for _, rs := range realServers {
		reals6 = append(reals6, realServer{Addr: testutil.HostIP6(rs), Weight: 1})
	}
	conf := filepath.Join(tb.TempDir(), "keepalived.conf")
	writeFile(tb, conf, keepalivedConf(
		virtualServer{VIP: testutil.VIP4, Port: port, Proto: proto, Reals: reals(map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1})},
		virtualServer{VIP: testutil.VIP6, Port: port, Proto: proto, Reals: reals6},
	))
	return conf
}
