package reconcile

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/datapath"
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
	withQuorum := func(c *service.Config, q int) *service.Config {
		c.Services[0].Quorum = q
		return c
	}
	tests := []struct {
		name    string
		cfg     *service.Config
		down    []netip.Addr
		dynamic map[netip.AddrPort]int
		ovr     map[netip.AddrPort]int
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
		{name: "quorum lost, sorry server: the live backends leave too", cfg: withQuorum(svc(false, true), 4), down: []netip.Addr{rsB},
			want: []balancer.Backend{be(sorry, 1)}},
		{name: "quorum lost, sorry server, inhibit: all drained", cfg: withQuorum(svc(true, true), 4), down: []netip.Addr{rsB},
			want: []balancer.Backend{be(rsA, 0), be(rsB, 0), be(sorry, 1)}},
		{name: "quorum lost, no sorry server: served as without a quorum", cfg: withQuorum(svc(false, false), 4), down: []netip.Addr{rsB},
			want: []balancer.Backend{be(rsA, 3)}},
		{name: "quorum held", cfg: withQuorum(svc(false, true), 3), down: []netip.Addr{rsB},
			want: []balancer.Backend{be(rsA, 3)}},
		{name: "dynamic weight", cfg: svc(false, false), dynamic: map[netip.AddrPort]int{ap(rsB): 7},
			want: []balancer.Backend{be(rsA, 3), be(rsB, 7)}},
		{name: "dynamic weight of a down server with inhibit is 0", cfg: svc(true, false), down: []netip.Addr{rsB},
			dynamic: map[netip.AddrPort]int{ap(rsB): 7}, want: []balancer.Backend{be(rsA, 3), be(rsB, 0)}},
		{name: "override drains: present at weight 0, flows kept", cfg: svc(false, false), ovr: map[netip.AddrPort]int{ap(rsA): 0},
			want: []balancer.Backend{be(rsA, 0), be(rsB, 1)}},
		{name: "override weight", cfg: svc(false, false), ovr: map[netip.AddrPort]int{ap(rsB): 9},
			want: []balancer.Backend{be(rsA, 3), be(rsB, 9)}},
		{name: "override of a down server without inhibit: still removed", cfg: svc(false, false), down: []netip.Addr{rsB},
			ovr: map[netip.AddrPort]int{ap(rsB): 9}, want: []balancer.Backend{be(rsA, 3)}},
		{name: "override does not revive a down server with inhibit", cfg: svc(true, false), down: []netip.Addr{rsB},
			ovr: map[netip.AddrPort]int{ap(rsB): 9}, want: []balancer.Backend{be(rsA, 3), be(rsB, 0)}},
		{name: "drained server keeps the quorum: quorums count configured weights", cfg: withQuorum(svc(false, true), 4),
			ovr: map[netip.AddrPort]int{ap(rsA): 0}, want: []balancer.Backend{be(rsA, 0), be(rsB, 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeHealth{down: map[netip.AddrPort]bool{}, dynamic: tc.dynamic}
			for _, a := range tc.down {
				h.down[ap(a)] = true
			}
			q, _ := nextQuorums(tc.cfg, h, nil)
			var ovr Overrides
			if tc.ovr != nil {
				ovr = fakeOverrides(tc.ovr)
			}
			got := desired(tc.cfg, Links{MACs: macs}, h, q, ovr)
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

// TestNextQuorums steps a service of weights 3, 1 and 1 through backend
// failures: with quorum 4 and hysteresis 1 it holds down to a live weight
// of 3, loses it below, and regains it only at 5; without a quorum it
// holds while any backend is up.
func TestNextQuorums(t *testing.T) {
	rsC := netip.MustParseAddr("198.51.100.13")
	cfg := func(quorum int) *service.Config {
		return &service.Config{Services: []service.Service{{
			VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP, Quorum: quorum, Hysteresis: 1,
			Backends: []service.Backend{{Addr: rsA, Port: 80, Weight: 3}, {Addr: rsB, Port: 80, Weight: 1}, {Addr: rsC, Port: 80, Weight: 1}},
		}}}
	}
	steps := []struct {
		down []netip.Addr
		// held and changed with quorum 4, then without a quorum.
		held, changed       bool
		heldAny, changedAny bool
	}{
		{nil, true, false, true, false},
		{[]netip.Addr{rsC}, true, false, true, false},
		{[]netip.Addr{rsB, rsC}, true, false, true, false},
		{[]netip.Addr{rsA}, false, true, true, false},
		{[]netip.Addr{rsC}, false, false, true, false},
		{nil, true, true, true, false},
		{[]netip.Addr{rsA, rsB, rsC}, false, true, false, true},
		{[]netip.Addr{rsA, rsB}, false, false, true, true},
	}
	var q, qAny quorums
	for i, st := range steps {
		h := fakeHealth{down: map[netip.AddrPort]bool{}}
		for _, a := range st.down {
			h.down[ap(a)] = true
		}
		var changed, changedAny []service.Service
		q, changed = nextQuorums(cfg(4), h, q)
		qAny, changedAny = nextQuorums(cfg(0), h, qAny)
		key := cfg(0).Services[0].Key()
		if q[key] != st.held || (len(changed) > 0) != st.changed {
			t.Errorf("step %d (down %v), quorum 4: held %v changed %v, want %v %v", i, st.down, q[key], len(changed) > 0, st.held, st.changed)
		}
		if qAny[key] != st.heldAny || (len(changedAny) > 0) != st.changedAny {
			t.Errorf("step %d (down %v), no quorum: held %v changed %v, want %v %v", i, st.down, qAny[key], len(changedAny) > 0, st.heldAny, st.changedAny)
		}
	}
}

// fakeBalancer records what it is asked to serve and fails when told to.
type fakeBalancer struct {
	fail   bool
	served [][]balancer.Service
}

func (f *fakeBalancer) Apply(s []balancer.Service) error {
	if f.fail {
		return errors.New("rejected")
	}
	f.served = append(f.served, s)
	return nil
}

// TestReconcilerQuorum: Apply reports a quorum change once, with the new
// state; a failed Apply reports nothing and forgets nothing, so the change
// is reported by the next Apply that succeeds.
func TestReconcilerQuorum(t *testing.T) {
	cfg := &service.Config{Services: []service.Service{{
		VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP, Quorum: 4,
		SorryServer: &service.SorryServer{Addr: sorry, Port: 80},
		Backends:    []service.Backend{{Addr: rsA, Port: 80, Weight: 3}, {Addr: rsB, Port: 80, Weight: 1}},
	}}}
	key := cfg.Services[0].Key()
	macs := map[netip.Addr]net.HardwareAddr{rsA: macA, rsB: macB, sorry: macS}
	up := fakeHealth{}
	bDown := fakeHealth{down: map[netip.AddrPort]bool{ap(rsB): true}}
	bal := &fakeBalancer{}
	r := New(bal)

	steps := []struct {
		name string
		h    Health
		fail bool
		want []QuorumChange // nil: no change; held is the state after
		held bool
	}{
		{name: "start: held, nothing to report", h: up, held: true},
		{name: "rs2 down: a rejected apply reports nothing", h: bDown, fail: true, held: true},
		{name: "rs2 down: lost", h: bDown, want: []QuorumChange{{Service: cfg.Services[0], Held: false}}},
		{name: "still down: no change", h: bDown},
		{name: "nil health is every server up: regained", h: nil, want: []QuorumChange{{Service: cfg.Services[0], Held: true}}, held: true},
	}
	for _, st := range steps {
		bal.fail = st.fail
		got, err := r.Apply(cfg, Links{MACs: macs}, st.h)
		if (err != nil) != st.fail {
			t.Fatalf("%s: error %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", st.name, diff)
		}
		if r.HoldsQuorum(key) != st.held {
			t.Errorf("%s: holds quorum %v, want %v", st.name, r.HoldsQuorum(key), st.held)
		}
	}
	if n := len(bal.served); n != 4 {
		t.Errorf("%d applies reached the balancer, want 4", n)
	}
}

// TestCapacity: a configuration that does not fit the maps is refused at
// the first service past the limit; one that fits but could not be
// replaced whole by a reload is warned about.
func TestCapacity(t *testing.T) {
	cfg := func(services, backends int, sorry bool) *service.Config {
		c := &service.Config{}
		for i := range services {
			s := service.Service{VIP: netip.AddrFrom4([4]byte{192, 0, byte(2 + i/256), byte(i)}), Port: 80, Proto: service.TCP,
				Source: service.Pos{File: "c", Line: i + 1}}
			for j := range backends {
				s.Backends = append(s.Backends, service.Backend{Addr: netip.AddrFrom4([4]byte{198, 51, byte(j / 256), byte(j)}), Port: 80})
			}
			if sorry {
				s.SorryServer = &service.SorryServer{Addr: netip.MustParseAddr("203.0.113.1"), Port: 80}
			}
			c.Services = append(c.Services, s)
		}
		return c
	}
	for _, tc := range []struct {
		name      string
		cfg       *service.Config
		err, warn string
	}{
		{name: "small", cfg: cfg(10, 10, true)},
		{name: "services: more than half", cfg: cfg(2048, 1, false), warn: "2048 services: a reload that replaced them all would need 4096 service ids at once, the data path holds 4095"},
		{name: "services: too many", cfg: cfg(4096, 1, false), err: "c:4096: service 192.0.17.255:80/tcp: 4096 services, the data path holds 4095"},
		{name: "real servers: more than half", cfg: cfg(4, 8191, true), warn: "32768 real servers: a reload that replaced them all would need 65536 backend ids at once, the data path holds 65535"},
		{name: "real servers: too many, the sorry servers count", cfg: cfg(4, 16383, true), err: "c:4: 65536 real servers in all services, the data path holds 65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warns, err := Capacity(tc.cfg)
			if got := fmt.Sprint(err); (tc.err == "" && err != nil) || (tc.err != "" && got != tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			var got []string
			for _, w := range warns {
				got = append(got, w.Msg)
			}
			var want []string
			if tc.warn != "" {
				want = []string{tc.warn}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeOverrides replaces the weight of the servers it lists.
type fakeOverrides map[netip.AddrPort]int

func (f fakeOverrides) Weight(_ service.ServiceKey, be netip.AddrPort, w int) int {
	if o, ok := f[be]; ok {
		return o
	}
	return w
}

// TestDesiredTunnel: a service mixes direct-routing and tunnel servers;
// a tunnel server is served from its outer source, needs no MAC, and
// stays out of the tables while it has no source, as a DR server without
// a MAC does. The sorry server may be tunnelled too.
func TestDesiredTunnel(t *testing.T) {
	rsT := netip.MustParseAddr("203.0.113.20")
	rsG := netip.MustParseAddr("203.0.113.21")
	sorryT := netip.MustParseAddr("203.0.113.99")
	lb := netip.MustParseAddr("198.51.100.2")
	gue := service.Forward{Method: service.Tunnel, Encap: service.GUE, Port: 6080, Csum: true}
	cfg := &service.Config{Services: []service.Service{{
		VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP, Scheduler: "wrr",
		Backends: []service.Backend{
			{Addr: rsA, Port: 80, Weight: 1},
			{Addr: rsT, Port: 80, Weight: 2, Forward: service.Forward{Method: service.Tunnel}},
			{Addr: rsG, Port: 80, Weight: 3, Forward: gue},
		},
		SorryServer: &service.SorryServer{Addr: sorryT, Port: 80, Inhibit: true, Forward: service.Forward{Method: service.Tunnel}},
	}}}
	links := Links{
		MACs:    map[netip.Addr]net.HardwareAddr{rsA: macA, rsT: macB}, // a MAC for a tunnel server is not used
		Sources: map[netip.Addr]netip.Addr{rsT: lb, sorryT: lb, rsA: lb},
	}
	q, _ := nextQuorums(cfg, alwaysUp{}, nil)
	got := desired(cfg, links, alwaysUp{}, q, nil)
	want := []balancer.Backend{
		{Addr: rsA, Port: 80, Weight: 1, MAC: macA},
		{Addr: rsT, Port: 80, Weight: 2, Tunnel: &datapath.Tunnel{Encap: datapath.EncapIPIP, Dst: rsT, Src: lb}},
		{Addr: rsG, Port: 80, Weight: 3}, // no source yet: unresolved
		{Addr: sorryT, Port: 80, Weight: 0, Tunnel: &datapath.Tunnel{Encap: datapath.EncapIPIP, Dst: sorryT, Src: lb}},
	}
	if diff := cmp.Diff(want, got[0].Backends, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
	links.Sources[rsG] = lb
	got = desired(cfg, links, alwaysUp{}, q, nil)
	wantG := &datapath.Tunnel{Encap: datapath.EncapGUE, Dst: rsG, Src: lb, Port: 6080, Csum: true}
	if diff := cmp.Diff(wantG, got[0].Backends[2].Tunnel, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("gue server once its source is known (-want +got):\n%s", diff)
	}
}

// TestLinks: with SetLinks, each real server (the sorry server too) is
// served out of the interface its address is on; without, out of the
// one a frame came in on.
func TestLinks(t *testing.T) {
	cfg := &service.Config{Services: []service.Service{{
		VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP, Scheduler: "wrr",
		SorryServer: &service.SorryServer{Addr: sorry, Port: 80, Inhibit: true},
		Backends:    []service.Backend{{Addr: rsA, Port: 80, Weight: 1}, {Addr: rsB, Port: 80, Weight: 1}},
	}}}
	macs := map[netip.Addr]net.HardwareAddr{rsA: macA, rsB: macB, sorry: macS}
	ifindexes := func(f *fakeBalancer) map[netip.Addr]uint32 {
		out := map[netip.Addr]uint32{}
		for _, b := range f.served[len(f.served)-1][0].Backends {
			out[b.Addr] = b.Ifindex
		}
		return out
	}
	f := &fakeBalancer{}
	r := New(f)
	if _, err := r.Apply(cfg, Links{MACs: macs}, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[netip.Addr]uint32{rsA: 0, rsB: 0, sorry: 0}, ifindexes(f)); diff != "" {
		t.Errorf("without links (-want +got):\n%s", diff)
	}
	r.SetLinks(func(a netip.Addr) uint32 { return map[netip.Addr]uint32{rsA: 2, sorry: 3}[a] })
	if _, err := r.Apply(cfg, Links{MACs: macs}, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[netip.Addr]uint32{rsA: 2, rsB: 0, sorry: 3}, ifindexes(f)); diff != "" {
		t.Errorf("with links (-want +got):\n%s", diff)
	}
}
