package bgp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	vip4 = netip.MustParseAddr("192.0.2.10")
	vip6 = netip.MustParseAddr("2001:db8:200::10")
)

func TestDecide(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		web := svcKey(vip, 80)
		tls := svcKey(vip, 443)
		tests := []struct {
			name      string
			facts     Facts
			announced []netip.Addr
			want      Action
			reason    string
		}{
			{"serving", Facts{Attached: true, Services: []ServiceFacts{{Key: web, Live: true, Quorum: true}, {Key: tls, Live: true, Quorum: true}}}, nil,
				Announce, "serving: 2 service(s) with live real servers"},
			{"not attached", Facts{Services: []ServiceFacts{{Key: web, Live: true, Quorum: true}}}, nil,
				Withdraw, "withdrawn: the XDP program is not attached"},
			{"daemon stalled", Facts{Attached: true, Stalled: true, Services: []ServiceFacts{{Key: web, Live: true, Quorum: true}}}, []netip.Addr{vip},
				Withdraw, "withdrawn: the daemon's event loop has not turned for 10s"},
			{"every backend failed", Facts{Attached: true, Services: []ServiceFacts{{Key: web}}}, []netip.Addr{vip},
				Withdraw, "withdrawn: " + web.String() + " has no live real server"},
			{"one service of the VIP failed", Facts{Attached: true, Services: []ServiceFacts{{Key: web, Live: true, Quorum: true}, {Key: tls}}}, []netip.Addr{vip},
				Withdraw, "withdrawn: " + tls.String() + " has no live real server"},
			{"quorum lost", Facts{Attached: true, Services: []ServiceFacts{{Key: web, Live: true}}}, []netip.Addr{vip},
				Withdraw, "withdrawn: " + web.String() + " lost its quorum"},
			{"sorry server serves", Facts{Attached: true, Services: []ServiceFacts{{Key: web, Sorry: true}}}, []netip.Addr{vip},
				AnnounceSorry, "announced at MED +1000: only the sorry server serves " + web.String()},
			{"quorum lost, sorry server", Facts{Attached: true, Services: []ServiceFacts{{Key: web, Live: true, Sorry: true}}}, []netip.Addr{vip},
				AnnounceSorry, "announced at MED +1000: only the sorry server serves " + web.String()},
			{"leaving", Facts{Attached: true, Leaving: true, Services: []ServiceFacts{{Key: web, Live: true, Quorum: true}}}, []netip.Addr{vip},
				Leave, "leaving: the balancer is stopping or drained"},
			{"removed by a reload", Facts{Attached: true}, []netip.Addr{vip},
				Leave, "leaving: no service has this VIP any more"},
		}
		for _, tt := range tests {
			t.Run(vip.String()+"/"+tt.name, func(t *testing.T) {
				got := Decide(tt.facts, tt.announced)
				want := []Decision{{VIP: vip, Action: tt.want, Reason: tt.reason}}
				if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}
}
