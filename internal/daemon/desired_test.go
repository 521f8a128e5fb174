package daemon

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/service"
)

// fakeHealth marks the listed real servers down and gives others a
// dynamic weight (MISC_CHECK's misc_dynamic).
type fakeHealth struct {
	down    map[netip.AddrPort]bool
	dynamic map[netip.AddrPort]int
}

func (h fakeHealth) Up(_ service.ServiceKey, be netip.AddrPort) bool { return !h.down[be] }
func (h fakeHealth) DynamicWeight(_ service.ServiceKey, be netip.AddrPort) (int, bool) {
	w, ok := h.dynamic[be]
	return w, ok
}

var (
	rsA   = netip.MustParseAddr("198.51.100.11")
	rsB   = netip.MustParseAddr("198.51.100.12")
	sorry = netip.MustParseAddr("198.51.100.99")
	macA  = net.HardwareAddr{2, 0, 0, 0, 0, 0x11}
	macB  = net.HardwareAddr{2, 0, 0, 0, 0, 0x12}
	macS  = net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
)

func ap(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, 80) }

// TestDesired holds desired to keepalived's semantics for failed real
// servers: inhibit_on_failure drains at weight 0, otherwise the server
// leaves the table; with every server down the sorry server takes new
// flows, or, without one, the table stays with every server at weight 0.
func TestDesired(t *testing.T) {
	svc := func(inhibit bool, withSorry bool, sorryInhibit ...bool) *service.Config {
		s := service.Service{
			VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP, Scheduler: "wrr",
			Backends: []service.Backend{
				{Addr: rsA, Port: 80, Weight: 3, InhibitOnFailure: inhibit},
				{Addr: rsB, Port: 80, Weight: 1, InhibitOnFailure: inhibit},
			},
		}
		if withSorry {
			s.SorryServer = &service.SorryServer{Addr: sorry, Port: 80, Inhibit: len(sorryInhibit) > 0 && sorryInhibit[0]}
		}
		return &service.Config{Services: []service.Service{s}}
	}
	macs := map[netip.Addr]net.HardwareAddr{rsA: macA, rsB: macB, sorry: macS}
	be := func(a netip.Addr, w uint32) balancer.Backend {
		return balancer.Backend{Addr: a, Port: 80, Weight: w, MAC: macs[a]}
	}
	tests := []struct {
		name    string
		cfg     *service.Config
		down    []netip.Addr
		dynamic map[netip.AddrPort]int
		want    []balancer.Backend
	}{
		{name: "all up", cfg: svc(false, false), want: []balancer.Backend{be(rsA, 3), be(rsB, 1)}},
		{name: "one down, inhibit: drained at weight 0", cfg: svc(true, false), down: []netip.Addr{rsA},
			want: []balancer.Backend{be(rsA, 0), be(rsB, 1)}},
		{name: "one down, no inhibit: removed", cfg: svc(false, false), down: []netip.Addr{rsA},
			want: []balancer.Backend{be(rsB, 1)}},
		{name: "all down, no sorry server: table kept at weight 0", cfg: svc(false, false), down: []netip.Addr{rsA, rsB},
			want: []balancer.Backend{be(rsA, 0), be(rsB, 0)}},
		{name: "all down, sorry server, no inhibit: sorry only", cfg: svc(false, true), down: []netip.Addr{rsA, rsB},
			want: []balancer.Backend{be(sorry, 1)}},
		{name: "all down, sorry server, inhibit: drained plus sorry", cfg: svc(true, true), down: []netip.Addr{rsA, rsB},
			want: []balancer.Backend{be(rsA, 0), be(rsB, 0), be(sorry, 1)}},
		{name: "one up, sorry server unused", cfg: svc(false, true), down: []netip.Addr{rsB},
			want: []balancer.Backend{be(rsA, 3)}},
		{name: "one up, sorry_server_inhibit: sorry server drained at weight 0", cfg: svc(false, true, true), down: []netip.Addr{rsB},
			want: []balancer.Backend{be(rsA, 3), be(sorry, 0)}},
		{name: "all down, sorry_server_inhibit: sorry server serves", cfg: svc(false, true, true), down: []netip.Addr{rsA, rsB},
			want: []balancer.Backend{be(sorry, 1)}},
		{name: "dynamic weight", cfg: svc(false, false), dynamic: map[netip.AddrPort]int{ap(rsB): 7},
			want: []balancer.Backend{be(rsA, 3), be(rsB, 7)}},
		{name: "dynamic weight of a down server with inhibit is 0", cfg: svc(true, false), down: []netip.Addr{rsB},
			dynamic: map[netip.AddrPort]int{ap(rsB): 7}, want: []balancer.Backend{be(rsA, 3), be(rsB, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeHealth{down: map[netip.AddrPort]bool{}, dynamic: tc.dynamic}
			for _, a := range tc.down {
				h.down[ap(a)] = true
			}
			got := desired(tc.cfg, macs, h)
			if len(got) != 1 {
				t.Fatalf("%d services, want 1", len(got))
			}
			if got[0].HashSource {
				t.Errorf("wrr service hashes on the source only")
			}
			if diff := cmp.Diff(tc.want, got[0].Backends, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHashSource: sh, mh and any persistence hash on the client address.
func TestHashSource(t *testing.T) {
	for _, tc := range []struct {
		sched       string
		persistence bool
		want        bool
	}{
		{"wrr", false, false}, {"rr", false, false}, {"wlc", false, false},
		{"sh", false, true}, {"mh", false, true}, {"wrr", true, true},
	} {
		s := service.Service{Scheduler: tc.sched}
		if tc.persistence {
			s.Persistence = 300e9
		}
		if got := hashSource(s); got != tc.want {
			t.Errorf("scheduler %s, persistence %v: hashSource %v, want %v", tc.sched, tc.persistence, got, tc.want)
		}
	}
}
