package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-project/xlb/internal/testutil"
)

// fragSizes are the UDP payloads each client socket sends, in order: the
// first fits one frame, so the flow is made by an unfragmented datagram
// and the fragmented ones after it must find it; 1473 is the smallest
// that no longer fits 1500 bytes, 8000 takes six fragments.
var fragSizes = []int{100, 3000, 1472, 1473, 8000, 200, 5000}

// TestFragmentedUDP sends UDP datagrams larger than the MTU to a UDP
// service, IPv4 and IPv6, so that the client's kernel fragments them. The
// real servers answer each datagram with their name and its length
// (udpecho -name): a datagram answered with its full length arrived whole,
// every fragment at one server; every datagram of one socket (one
// 5-tuple), fragmented or not, must reach the same server; and the
// sockets together must reach every server.
func TestFragmentedUDP(t *testing.T) {
	topo := newTopology(t)
	bin := testutil.BuildBinary(t, "./internal/testutil/cmd/udpecho")
	for _, rs := range realServers {
		p := topo.Start(t, rs, bin, "-listen", fmt.Sprintf(":%d", probePort), "-listen6", fmt.Sprintf(":%d", probePort), "-name", rs)
		waitReady(t, p, "udpecho in "+rs)
	}
	conf := dualStackConf(t, probePort, "UDP")
	startDaemon(t, topo, conf)

	for _, vipAddr := range []netip.Addr{testutil.VIP4, testutil.VIP6} {
		name := "IPv4"
		if vipAddr.Is6() {
			name = "IPv6"
		}
		t.Run(name, func(t *testing.T) {
			// 3 * (2/3)^16: the chance that 16 sockets miss one of the servers.
			const sockets = 16
			vip := netip.AddrPortFrom(vipAddr, probePort)
			servedBy := map[string]int{}
			for i := range sockets {
				c := fragSocket(t, topo, vipAddr.Is6())
				server := ""
				for _, size := range fragSizes {
					got, err := askSize(c, vip, size)
					if err != nil {
						t.Fatalf("socket %d (%s): %v", i, c.LocalAddr(), err)
					}
					name, n, ok := strings.Cut(got, " ")
					if !ok || n != strconv.Itoa(size) {
						t.Errorf("socket %d (%s): %d bytes answered %q, want NAME %d: the datagram did not arrive whole", i, c.LocalAddr(), size, got, size)
					}
					if server == "" {
						server = name
					} else if name != server {
						t.Errorf("socket %d (%s): the %d-byte datagram reached %s, the socket's earlier ones %s: one 5-tuple, two servers", i, c.LocalAddr(), size, name, server)
					}
				}
				servedBy[server]++
			}
			t.Logf("sockets by real server: %v", servedBy)
			for _, rs := range realServers {
				if servedBy[rs] == 0 {
					t.Errorf("%s served none of %d sockets: %v", rs, sockets, servedBy)
				}
			}
		})
	}
}

// fragSocket opens a UDP socket in the client that lets the kernel
// fragment what it sends (no DF, no path-MTU error), closed at cleanup.
func fragSocket(tb testing.TB, topo *testutil.Topology, v6 bool) *net.UDPConn {
	tb.Helper()
	network, local := "udp4", testutil.HostIP4(testutil.Client)
	level, opt, dont := unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT
	if v6 {
		network, local = "udp6", testutil.HostIP6(testutil.Client)
		level, opt, dont = unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT
	}
	var c *net.UDPConn
	err := topo.Do(testutil.Client, func() error {
		var err error
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
		if err != nil {
			return err
		}
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), level, opt, dont)
		}); err != nil {
			return err
		}
		return serr
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		tb.Fatalf("UDP socket in the client: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// askSize sends a datagram of size bytes to vip and returns the answer
// that came back from vip. A datagram can be lost on its way: it is sent
// up to three times, a second apart, before that counts as a failure.
func askSize(c *net.UDPConn, vip netip.AddrPort, size int) (string, error) {
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ {
		if _, err := c.WriteToUDPAddrPort(msg, vip); err != nil {
			return "", fmt.Errorf("send %d bytes to %s: %w", size, vip, err)
		}
		if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			return "", err
		}
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break
				}
				return "", fmt.Errorf("answer to %d bytes: %w", size, err)
			}
			if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) == vip {
				return string(buf[:n]), nil
			}
		}
	}
	return "", fmt.Errorf("no answer from %s to %d bytes, sent three times", vip, size)
}
