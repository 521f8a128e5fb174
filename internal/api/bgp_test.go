package api

import (
	"bytes"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestWriteBGP: the `xlb bgp` tables, golden, with and without a bgp
// section.
func TestWriteBGP(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		st   State
	}{
		{"off", State{}},
		{"running", State{BGP: &BGP{
			LocalAS: 65001, RouterID: "198.51.100.2", Digest: "3f1c0a9e2b7d",
			Peers: []BGPPeer{
				{Address: "198.51.100.1", AS: 65000, State: "ESTABLISHED", Since: now.Add(-90 * time.Second), Sent: 2, Received: 0},
				{Address: "2001:db8:100::1", AS: 65000, State: "ACTIVE"},
			},
			VIPs: []BGPVIP{
				{VIP: "192.0.2.10", State: "announced", Reason: "serving: 1 service(s) with live real servers", Communities: []string{"65001:100"}},
				{VIP: "2001:db8:200::10", State: "withdrawn", Reason: "withdrawn: [2001:db8:200::10]:80/tcp has no live real server"},
			},
		}}},
		{"draining", State{BGP: &BGP{
			LocalAS: 65001, RouterID: "198.51.100.2", Draining: true,
			VIPs: []BGPVIP{{VIP: "192.0.2.10", State: "leaving", MED: 4294967295, Communities: []string{"65535:0"}, Reason: "leaving: the balancer is stopping or drained"}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteBGP(&b, tt.st, now); err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, "testdata/bgp-"+tt.name+".golden", b.Bytes())
		})
	}
}
