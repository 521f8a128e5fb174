package e2e

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestDualStack serves the web service on the IPv4 and the IPv6 VIP at
// once, from one keepalived.conf, with the IPv6 real servers' MACs found
// by neighbour discovery. Over IPv6 every real server must answer and see
// the client's own IPv6 address and port (direct routing); IPv4 keeps
// working beside it; `xlb list -n` shows the IPv6 service the way ipvsadm
// writes one.
func TestDualStack(t *testing.T) {
	topo := newTopology(t)
	startRealServers(t, topo)
	conf := dualStackConf(t, httpPort, "TCP")
	d := startDaemon(t, topo, conf)

	client6 := testutil.HostIP6(testutil.Client)
	got := map[string]int{}
	// (2/3)^60 is the chance that 60 connections miss one backend.
	for i := range 60 {
		a, err := httpGetVIP(topo, testutil.Client, testutil.VIP6)
		if err != nil {
			t.Fatalf("request %d to %s: %v", i, testutil.VIP6, err)
		}
		if a.Peer != a.Local || a.Peer.Addr() != client6 {
			t.Errorf("request %d: %s saw the client as %s, want the client's own %s", i, a.Server, a.Peer, a.Local)
		}
		got[a.Server]++
	}
	t.Logf("IPv6 answers by real server: %v", got)
	for _, rs := range realServers {
		if got[rs] == 0 {
			t.Errorf("%s answered none of 60 IPv6 requests: %v", rs, got)
		}
	}
	if a, err := httpGet(topo, testutil.Client); err != nil {
		t.Errorf("IPv4 beside IPv6: %v", err)
	} else if a.Peer.Addr() != testutil.HostIP4(testutil.Client) {
		t.Errorf("IPv4 beside IPv6: %s saw the client as %s", a.Server, a.Peer)
	}

	list := d.xlb(t, "list", "-n")
	vip6 := netip.AddrPortFrom(testutil.VIP6, httpPort).String() // [2001:db8:200::10]:80
	if !strings.Contains(list, "TCP  "+vip6+" ") {
		t.Errorf("xlb list -n has no line for %s:\n%s", vip6, list)
	}
	for _, rs := range realServers {
		be := "  -> " + netip.AddrPortFrom(testutil.HostIP6(rs), httpPort).String() + " "
		if !strings.Contains(list, be) {
			t.Errorf("xlb list -n has no %q line:\n%s", strings.TrimSpace(be), list)
		}
	}
}
