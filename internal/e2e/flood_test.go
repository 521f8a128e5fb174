package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-project/xlb/internal/testutil"
)

// The flood test's scale: a flow table of floodTable entries, and each
// run's flood far larger, bounded in tuples and in time.
const (
	floodTable    = 4096
	floodRuns     = 10
	floodConns    = 20
	floodTuples   = 400_000 // per run, at most
	floodDuration = 2 * time.Second
	// floodMinNew is the fewest new flows a run's flood must make the
	// balancer see, or the run proves nothing: many times the table.
	floodMinNew = 8 * floodTable
	// floodIdle is how long the connections stay silent between
	// messages: longer than the table's promotion age, and than the
	// time a flood takes to churn through the table.
	floodIdle = 2 * time.Second
)

// floodMode is what the attacker sends per spoofed tuple.
type floodMode int

const (
	floodSYN    floodMode = iota // one SYN
	floodSYNACK                  // a SYN, then an ACK: a handshake as a DR balancer sees one
)

func (m floodMode) String() string { return [...]string{"SYN", "SYN+ACK"}[m] }

// TestFloodKeepsEstablished: established connections, silent for seconds
// between messages, survive floods of new tuples from spoofed sources in
// 198.18.0.0/15 (single SYNs, and SYN-then-ACK pairs: a DR balancer never
// sees the server's half, so it cannot tell them from real handshakes),
// each far larger than the flow table, with a weight change in the middle
// that moves Maglev slots: a connection whose entry the flood flushed
// would be re-hashed to another server and reset. 0 broken in every run;
// `xlb list` answers throughout; the flood's packets are counted.
func TestFloodKeepsEstablished(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	weights := []map[string]int{
		{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1},
		{testutil.RS1: 4, testutil.RS2: 1, testutil.RS3: 2},
	}
	stage := func(w map[string]int) string {
		return keepalivedConf(virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP", Reals: reals(w)})
	}
	writeFile(t, conf, stage(weights[0]))
	d := startDaemonWith(t, topo, conf, "--flows", fmt.Sprint(floodTable))
	fl := newFlooder(t, topo)

	broken := 0
	for run := range floodRuns {
		mode := floodMode(run % 2)
		before := d.mustState(t).Counters
		conns := openIdleConns(t, topo, floodConns)
		conns.round(t, "first message")
		time.Sleep(floodIdle)
		conns.round(t, "second message")

		// The flood, with `xlb list` polled throughout and the weights
		// changed half way.
		lister := pollList(d)
		stop := make(chan struct{})
		var sent int
		var sendErr error
		var wg sync.WaitGroup
		wg.Go(func() { sent, sendErr = fl.flood(mode, floodTuples, floodDuration, stop) })
		time.Sleep(floodDuration / 2)
		writeFile(t, conf, stage(weights[(run+1)%2]))
		d.xlb(t, "reload")
		wg.Wait()
		close(stop)
		polls, listErrs, slowest := lister.stop()

		time.Sleep(floodIdle / 2)
		conns.round(t, "after the flood")
		n := conns.close()
		broken += n
		after := d.mustState(t).Counters
		delta := map[string]uint64{}
		for k, v := range after {
			if v != before[k] {
				delta[k] = v - before[k]
			}
		}
		t.Logf("run %d: %s flood, %d frames sent: %d of %d connections broken; xlb list answered %d times (slowest %v); counters %v",
			run+1, mode, sent, n, floodConns, polls, slowest.Round(time.Millisecond), delta)
		if sendErr != nil {
			t.Fatalf("run %d: flood: %v", run+1, sendErr)
		}
		for _, err := range listErrs {
			t.Errorf("run %d: xlb list during the flood: %v", run+1, err)
		}
		if delta["flow_new"] < floodMinNew {
			t.Fatalf("run %d: the balancer saw %d new flows, fewer than %d: the flood was too small to test anything", run+1, delta["flow_new"], floodMinNew)
		}
	}
	if broken > 0 {
		t.Errorf("%d connections broken in %d runs", broken, floodRuns)
	}
}

// flooder sends hand-built TCP frames from the client to the VIP, each
// from a spoofed tuple never used before: the source address walks
// 198.18.0.0/15 (the benchmarking range), then the source port moves on.
type flooder struct {
	fd      int
	ifindex int
	next    uint64 // the next tuple's number
	frame   []byte // a SYN to VIP:echo, rewritten per tuple
}

func newFlooder(tb testing.TB, topo *testutil.Topology) *flooder {
	tb.Helper()
	f := &flooder{}
	f.fd, f.ifindex = clientPacketSocket(tb, topo, "flooder")
	f.frame = testutil.Frame{
		SrcMAC: testutil.HostMAC(testutil.Client),
		DstMAC: testutil.HostMAC(testutil.LB1), // the VIP's owner, as ARP says
		Src:    netip.MustParseAddr("198.18.0.0"),
		Dst:    testutil.VIP4,
		Proto:  testutil.ProtoTCP,
		// Any port of the service: the tuples go to the echo service.
		SrcPort: 1024, DstPort: echoPort,
		TCPFlags: testutil.TCPSyn,
		Seq:      1,
	}.Bytes()
	return f
}

// Offsets in the frame (Ethernet, IPv4 without options, TCP).
const (
	floodIPSum   = 14 + 10
	floodIPSrc   = 14 + 12
	floodSrcPort = 14 + 20
	floodFlags   = 14 + 20 + 13
	floodSpace   = 1 << 17 // addresses in 198.18.0.0/15
)

// flood sends up to tuples spoofed tuples as mode says, for at most d or
// until stop closes, and returns the frames it sent. The IP checksum is
// kept right; the TCP one is not, so the real servers drop the frames
// early: what is under test is the balancer's table, not their SYN queues.
func (f *flooder) flood(mode floodMode, tuples int, d time.Duration, stop <-chan struct{}) (int, error) {
	to := &unix.SockaddrLinklayer{Ifindex: f.ifindex}
	deadline := time.Now().Add(d)
	sent := 0
	for i := 0; i < tuples; i++ {
		if i%1024 == 0 {
			select {
			case <-stop:
				return sent, nil
			default:
			}
			if time.Now().After(deadline) {
				return sent, nil
			}
		}
		n := f.next
		f.next++
		src := binary.BigEndian.Uint32([]byte{198, 18, 0, 0}) + uint32(n%floodSpace)
		binary.BigEndian.PutUint32(f.frame[floodIPSrc:], src)
		binary.BigEndian.PutUint16(f.frame[floodSrcPort:], uint16(1024+(n/floodSpace)%60000))
		binary.BigEndian.PutUint16(f.frame[floodIPSum:], 0)
		binary.BigEndian.PutUint16(f.frame[floodIPSum:], testutil.Checksum(f.frame[14:34]))
		f.frame[floodFlags] = testutil.TCPSyn
		if err := unix.Sendto(f.fd, f.frame, 0, to); err != nil {
			return sent, fmt.Errorf("send tuple %d: %w", n, err)
		}
		sent++
		if mode == floodSYNACK {
			f.frame[floodFlags] = testutil.TCPAck
			if err := unix.Sendto(f.fd, f.frame, 0, to); err != nil {
				return sent, fmt.Errorf("send tuple %d: %w", n, err)
			}
			sent++
		}
	}
	return sent, nil
}

// idleConns are connections from the client to VIP:echo that carry a
// message only when told to, silent in between.
type idleConns struct {
	tb    testing.TB
	conns []net.Conn
	errs  []error
}

func openIdleConns(tb testing.TB, topo *testutil.Topology, n int) *idleConns {
	tb.Helper()
	ic := &idleConns{tb: tb, errs: make([]error, n)}
	to := netip.AddrPortFrom(testutil.VIP4, echoPort)
	for i := range n {
		c, err := dial(topo, testutil.Client, to)
		if err != nil {
			ic.close()
			tb.Fatalf("connection %d to %s: %v", i, to, err)
		}
		ic.conns = append(ic.conns, c)
	}
	tb.Cleanup(func() { ic.close() })
	return ic
}

// round sends one message on every connection still working and reads it
// back; a connection that fails is broken from then on.
func (ic *idleConns) round(tb testing.TB, what string) {
	tb.Helper()
	var wg sync.WaitGroup
	for i, c := range ic.conns {
		if ic.errs[i] != nil {
			continue
		}
		wg.Go(func() {
			msg := fmt.Appendf(nil, "%s, connection %d\n", what, i)
			in := make([]byte, len(msg))
			_ = c.SetDeadline(time.Now().Add(echoIOTimeout))
			if _, err := c.Write(msg); err != nil {
				ic.errs[i] = fmt.Errorf("%s: write: %w", what, err)
				return
			}
			if _, err := io.ReadFull(c, in); err != nil {
				ic.errs[i] = fmt.Errorf("%s: read: %w", what, err)
				return
			}
			if string(in) != string(msg) {
				ic.errs[i] = fmt.Errorf("%s: echoed %q, sent %q", what, in, msg)
			}
		})
	}
	wg.Wait()
	for i, err := range ic.errs {
		if err != nil && strings.HasPrefix(err.Error(), what) {
			tb.Logf("connection %d (%s): %v", i, ic.conns[i].LocalAddr(), err)
		}
	}
}

// close closes every connection and returns how many broke.
func (ic *idleConns) close() int {
	n := 0
	for i, c := range ic.conns {
		if ic.errs[i] != nil {
			n++
		}
		c.Close()
	}
	ic.conns = nil
	return n
}

// listPoller runs `xlb list --json` over and over until stopped.
type listPoller struct {
	done    chan struct{}
	stopped chan struct{}
	polls   atomic.Int64
	mu      sync.Mutex
	errs    []error
	slowest time.Duration
}

func pollList(d *daemon) *listPoller {
	p := &listPoller{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(p.stopped)
		for {
			select {
			case <-p.done:
				return
			default:
			}
			start := time.Now()
			_, err := d.state()
			took := time.Since(start)
			p.mu.Lock()
			if err != nil {
				p.errs = append(p.errs, err)
			}
			p.slowest = max(p.slowest, took)
			p.mu.Unlock()
			p.polls.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return p
}

// stop ends the polling and returns how many polls there were, their
// errors and the slowest answer.
func (p *listPoller) stop() (int64, []error, time.Duration) {
	close(p.done)
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls.Load(), p.errs, p.slowest
}
