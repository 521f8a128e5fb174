package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

const (
	// pathMTU is the MTU of rtr's route to the client: below the 1500 of
	// every link, so the client's MSS (1460) does not shrink to fit it
	// and only path-MTU discovery can.
	pathMTU = 1300
	// downloadSize is large enough that the transfer needs full-sized
	// segments for most of its length.
	downloadSize = 4 << 20
	// downloadTimeout is far above what a download with working PMTU
	// takes here (well under a second); without it the real server
	// retransmits a segment that cannot pass until TCP gives up, minutes
	// later.
	downloadTimeout = 20 * time.Second
)

// TestPMTU downloads through the VIP over a path with a smaller MTU
// between the real servers and the client (newPMTUTopology). The real
// servers' full segments do not fit; rtr answers each with "fragmentation
// needed" (IPv4) or "packet too big" (IPv6) to their source, the VIP,
// which rtr routes to lb1. Only if lb1's data path relays that message to the real server that
// holds the flow does the server lower its path MTU and the download
// complete; passed to lb1's own kernel it is dropped, and the transfer
// stalls.
func TestPMTU(t *testing.T) {
	topo := newPMTUTopology(t, false)
	startRealServers(t, topo)
	conf := dualStackConf(t, httpPort, "TCP")
	startDaemon(t, topo, conf)
	checkPMTU(t, topo, realServers)
}

// TestPMTUTunnel is TestPMTU with the tunnel server rs4 as the only real
// server: lb1 must relay rtr's errors to it encapsulated, as it sends the
// flow's packets, and rs4 must take them as its own.
func TestPMTUTunnel(t *testing.T) {
	topo := newPMTUTopology(t, true)
	startRealServersOn(t, topo, testutil.RS4)
	conf := rs4GUEConf(t, httpPort)
	startDaemon(t, topo, conf)
	checkPMTU(t, topo, []string{testutil.RS4})
}

// newPMTUTopology builds the --router topology (and rs4 with tunnel) whose
// path from rtr to the client is narrower than every link: rtr's route to
// the client has `mtu lock 1300`, so the client's MSS (1460) does not
// shrink to fit it and only path-MTU discovery can. rtr reaches the VIPs
// through lb1 by static routes, where the BGP tests run a routing daemon.
func newPMTUTopology(t *testing.T, tunnel bool) *testutil.Topology {
	t.Helper()
	var topo *testutil.Topology
	if tunnel {
		topo = newTunnelTopology(t, true)
	} else {
		testutil.RequireRoot(t, "builds the namespace topology and attaches XDP")
		obj := filepath.Join(testutil.MustRepoRoot(t), "internal", "datapath", "xdppass_bpfel.o")
		topo = testutil.NewTopology(t, testutil.TopologyOptions{VIPOn: testutil.LB1, XDPPassObj: obj, Router: true})
	}
	topo.Exec(t, testutil.Router, "ip", "route", "replace", testutil.VIP4.String()+"/32", "via", testutil.HostIP4(testutil.LB1).String())
	topo.Exec(t, testutil.Router, "ip", "-6", "route", "replace", testutil.VIP6.String()+"/128", "via", testutil.HostIP6(testutil.LB1).String())
	topo.Exec(t, testutil.Router, "ip", "route", "replace", "203.0.113.0/25", "dev", "eth1", "src", "203.0.113.1", "mtu", "lock", strconv.Itoa(pathMTU))
	// Metric 256 replaces the kernel's own route to the prefix; another
	// metric would add a route that the kernel's keeps winning over.
	topo.Exec(t, testutil.Router, "ip", "-6", "route", "replace", "2001:db8:300::/64", "dev", "eth1", "metric", "256", "mtu", "lock", strconv.Itoa(pathMTU))
	return topo
}

// checkPMTU downloads from each VIP through the narrow path and checks
// that the transfers complete, that rtr sent its ICMP errors and that the
// real servers (servers) received them.
func checkPMTU(t *testing.T, topo *testutil.Topology, servers []string) {
	t.Helper()
	for _, tt := range []struct {
		name     string
		vip      netip.Addr
		sent     string // rtr's counter of the errors it sends
		received string // the real servers' counter of the errors they get
	}{
		{"IPv4", testutil.VIP4, "Icmp OutDestUnreachs", "Icmp InDestUnreachs"},
		{"IPv6", testutil.VIP6, "Icmp6 OutPktTooBigs", "Icmp6 InPktTooBigs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rtrBefore := icmpCounters(t, topo, testutil.Router)[tt.sent]
			var rsBefore int64
			for _, rs := range servers {
				rsBefore += icmpCounters(t, topo, rs)[tt.received]
			}
			// Sequential downloads, so that each real server meets the
			// small MTU on a connection of its own before it has learnt
			// it: with 8 over three servers, (2/3)^8 is the chance that
			// one gets none.
			served := map[string]int{}
			for i := range 8 {
				start := time.Now()
				server, err := download(topo, tt.vip, downloadSize)
				if err != nil {
					t.Fatalf("download %d of %d bytes from %s: %v", i, downloadSize, tt.vip, err)
				}
				served[server]++
				t.Logf("download %d from %s: %s in %v", i, tt.vip, server, time.Since(start).Round(time.Millisecond))
			}
			t.Logf("downloads from %s by real server: %v", tt.vip, served)

			// The path really was narrower, and the real servers heard of it.
			if n := icmpCounters(t, topo, testutil.Router)[tt.sent] - rtrBefore; n == 0 {
				t.Errorf("rtr's %s did not move: the path MTU never came into play", tt.sent)
			}
			var rsAfter int64
			for _, rs := range servers {
				rsAfter += icmpCounters(t, topo, rs)[tt.received]
			}
			t.Logf("the real servers' %s moved by %d", tt.received, rsAfter-rsBefore)
			if rsAfter == rsBefore {
				t.Errorf("no real server's %s moved: lb1 relayed none of rtr's errors", tt.received)
			}
		})
	}
}

// download fetches /bytes/size from vip:80 on a new connection from the
// client and checks every byte; it returns the real server that sent it.
func download(topo *testutil.Topology, vip netip.Addr, size int) (string, error) {
	to := netip.AddrPortFrom(vip, httpPort)
	c, err := dial(topo, testutil.Client, to)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", to, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(downloadTimeout)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(c, "GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", size, to); err != nil {
		return "", fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	server := resp.Header.Get("X-Server")
	if resp.StatusCode != http.StatusOK {
		return server, fmt.Errorf("%s answered %s", server, resp.Status)
	}
	buf := make([]byte, 64<<10)
	var off int
	for {
		n, err := resp.Body.Read(buf)
		for i := range n {
			if buf[i] != byte((off+i)%251) {
				return server, fmt.Errorf("%s: byte %d is %#x, want %#x", server, off+i, buf[i], byte((off+i)%251))
			}
		}
		off += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return server, fmt.Errorf("%s: after %d of %d bytes: %w", server, off, size, err)
		}
	}
	if off != size {
		return server, fmt.Errorf("%s sent %d bytes, want %d", server, off, size)
	}
	return server, nil
}

// icmpCounters reads host's ICMP and ICMPv6 MIBs (/proc/net/snmp and
// /proc/net/snmp6 of its namespace), keyed "Icmp NAME" and "Icmp6 NAME".
func icmpCounters(tb testing.TB, topo *testutil.Topology, host string) map[string]int64 {
	tb.Helper()
	m := map[string]int64{}
	var names []string
	for _, l := range strings.Split(topo.Exec(tb, host, "cat", "/proc/net/snmp"), "\n") {
		if !strings.HasPrefix(l, "Icmp: ") {
			continue
		}
		f := strings.Fields(l)[1:]
		if names == nil {
			names = f
			continue
		}
		for i, v := range f {
			if i < len(names) {
				m["Icmp "+names[i]], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	for _, l := range strings.Split(topo.Exec(tb, host, "cat", "/proc/net/snmp6"), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasPrefix(f[0], "Icmp6") {
			m["Icmp6 "+strings.TrimPrefix(f[0], "Icmp6")], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if _, ok := m["Icmp InDestUnreachs"]; !ok {
		tb.Fatalf("%s: no Icmp InDestUnreachs in /proc/net/snmp", host)
	}
	if _, ok := m["Icmp6 InPktTooBigs"]; !ok {
		tb.Fatalf("%s: no Icmp6InPktTooBigs in /proc/net/snmp6", host)
	}
	return m
}
