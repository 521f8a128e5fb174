package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/clock/clocktest"
	"github.com/xlb-project/xlb/internal/service"
)

func svcKey(vip netip.Addr, port uint16) service.ServiceKey {
	return service.ServiceKey{VIP: vip, Port: port, Proto: service.TCP}
}

// fakeSpeaker records what a Node asks of the speaker, one line a call.
type fakeSpeaker struct {
	mu    sync.Mutex
	calls []string
	state string // every peer's session state
}

func (f *fakeSpeaker) log(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeSpeaker) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeSpeaker) Start(_ context.Context, b *service.BGP) error {
	f.log("start as %d peers %d", b.LocalAS, len(b.Peers))
	return nil
}
func (f *fakeSpeaker) SetPeers(_ context.Context, b *service.BGP) error {
	f.log("peers %d", len(b.Peers))
	return nil
}
func (f *fakeSpeaker) Announce(_ context.Context, r Route) error {
	lp := ""
	if r.LocalPref != nil {
		lp = fmt.Sprintf(" local_pref %d", *r.LocalPref)
	}
	f.log("announce %s med %d communities %v%s", r.Prefix, r.MED, r.Communities, lp)
	return nil
}
func (f *fakeSpeaker) Withdraw(_ context.Context, p netip.Prefix) error {
	f.log("withdraw %s", p)
	return nil
}
func (f *fakeSpeaker) Peers(context.Context) ([]api.BGPPeer, error) {
	return []api.BGPPeer{{Address: "198.51.100.1", AS: 65000, State: f.state}}, nil
}
func (f *fakeSpeaker) Stop(context.Context) error {
	f.log("stop")
	return nil
}

// health is the real servers that are up; quorums the services that hold
// their quorum.
type health map[netip.AddrPort]bool

func (h health) Up(_ service.ServiceKey, be netip.AddrPort) bool { return h[be] }

type quorums map[service.ServiceKey]bool

func (q quorums) HoldsQuorum(k service.ServiceKey) bool { return q[k] }
func (quorums) Digest() string                          { return "d1" }

func testConfig() *service.Config {
	med := uint32(50)
	return &service.Config{
		Services: []service.Service{
			{VIP: vip4, Port: 80, Proto: service.TCP, Backends: []service.Backend{{Addr: netip.MustParseAddr("198.51.100.11"), Port: 80}}},
			{VIP: vip6, Port: 80, Proto: service.TCP, Backends: []service.Backend{{Addr: netip.MustParseAddr("2001:db8:100::11"), Port: 80}},
				SorryServer: &service.SorryServer{Addr: netip.MustParseAddr("2001:db8:100::99"), Port: 80}},
		},
		BGP: &service.BGP{
			LocalAS: 65001, RouterID: netip.MustParseAddr("198.51.100.2"), GracefulLeave: 2 * time.Second,
			Communities: []service.Community{65001<<16 | 100},
			Peers:       []service.BGPPeer{{Address: netip.MustParseAddr("198.51.100.1"), AS: 65000}},
			VIPs:        []service.BGPVIP{{VIP: vip6, MED: &med}},
		},
	}
}

// TestNode drives a Node through its life on a fake speaker and clock,
// both families: announce after Start, withdraw when a service's real
// servers fail, the sorry server's MED, drain (graceful shutdown, then
// withdrawal), a reload that removes a VIP, and a graceful stop.
func TestNode(t *testing.T) {
	sp := &fakeSpeaker{state: "ESTABLISHED"}
	clk := clocktest.New(time.Unix(0, 0))
	cfg := testConfig()
	n := Prepare(cfg, slog.New(slog.DiscardHandler), Options{Speaker: func(*slog.Logger) Speaker { return sp }, Clock: clk})
	up := health{netip.MustParseAddrPort("198.51.100.11:80"): true, netip.MustParseAddrPort("[2001:db8:100::11]:80"): true}
	q := quorums{svcKey(vip4, 80): true, svcKey(vip6, 80): true}
	step := func(name string, do func(), want ...string) {
		t.Helper()
		do()
		if diff := cmp.Diff(want, sp.take()); diff != "" {
			t.Errorf("%s: speaker calls (-want +got):\n%s", name, diff)
		}
	}
	step("served before start", func() { n.Served(cfg, up, q) })
	step("start", func() {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}, "start as 65001 peers 1",
		"announce 192.0.2.10/32 med 0 communities [65001:100]",
		"announce 2001:db8:200::10/128 med 50 communities [65001:100]")
	step("unchanged", func() { n.Served(cfg, up, q) })
	step("v4 backend fails", func() {
		delete(up, netip.MustParseAddrPort("198.51.100.11:80"))
		n.Served(cfg, up, quorums{svcKey(vip6, 80): true})
	}, "withdraw 192.0.2.10/32")
	step("v6 backend fails, sorry server", func() {
		delete(up, netip.MustParseAddrPort("[2001:db8:100::11]:80"))
		n.Served(cfg, up, quorums{})
	}, "announce 2001:db8:200::10/128 med 1050 communities [65001:100]")
	up = health{netip.MustParseAddrPort("198.51.100.11:80"): true, netip.MustParseAddrPort("[2001:db8:100::11]:80"): true}
	step("back", func() { n.Served(cfg, up, q) },
		"announce 192.0.2.10/32 med 0 communities [65001:100]",
		"announce 2001:db8:200::10/128 med 50 communities [65001:100]")
	step("drain", func() { _ = n.Drain(true) },
		"announce 192.0.2.10/32 med 4294967295 communities [65001:100 65535:0] local_pref 0",
		"announce 2001:db8:200::10/128 med 4294967295 communities [65001:100 65535:0] local_pref 0")
	if got := n.State().VIPs[0].State; got != "leaving" {
		t.Errorf("draining VIP state %q, want leaving", got)
	}
	step("graceful_leave passes", func() { clk.Advance(2 * time.Second) },
		"withdraw 192.0.2.10/32", "withdraw 2001:db8:200::10/128")
	step("undrain", func() { _ = n.Drain(false) },
		"announce 192.0.2.10/32 med 0 communities [65001:100]",
		"announce 2001:db8:200::10/128 med 50 communities [65001:100]")
	reloaded := testConfig()
	reloaded.Services = reloaded.Services[:1]
	reloaded.BGP.VIPs = nil
	step("reload removes the v6 VIP", func() { n.Served(reloaded, up, q) },
		"announce 2001:db8:200::10/128 med 4294967295 communities [65001:100 65535:0] local_pref 0")
	step("reload's graceful_leave passes", func() { clk.Advance(2 * time.Second) }, "withdraw 2001:db8:200::10/128")
	step("the daemon's loop stalls", func() { clk.Advance(LivenessTimeout) },
		"withdraw 192.0.2.10/32")
	step("and turns again", n.Alive,
		"announce 192.0.2.10/32 med 0 communities [65001:100]")
	done := make(chan struct{})
	go func() { n.Stop(); close(done) }()
	// Stop waits graceful_leave on the clock: one timer for the VIP's
	// leave, one for Stop's wait.
	for clk.Pending() < 2 {
		time.Sleep(time.Millisecond)
	}
	if diff := cmp.Diff([]string{"announce 192.0.2.10/32 med 4294967295 communities [65001:100 65535:0] local_pref 0"}, sp.take()); diff != "" {
		t.Errorf("stop: graceful shutdown (-want +got):\n%s", diff)
	}
	clk.Advance(2 * time.Second)
	<-done
	if diff := cmp.Diff([]string{"withdraw 192.0.2.10/32", "stop"}, sp.take()); diff != "" {
		t.Errorf("stop: (-want +got):\n%s", diff)
	}
}

// TestNodeStopWithoutSession: with no session established there is nobody
// to tell, so a stop does not wait.
func TestNodeStopWithoutSession(t *testing.T) {
	sp := &fakeSpeaker{state: "ACTIVE"}
	cfg := testConfig()
	n := Prepare(cfg, slog.New(slog.DiscardHandler), Options{Speaker: func(*slog.Logger) Speaker { return sp }, Clock: clocktest.New(time.Unix(0, 0))})
	up := health{netip.MustParseAddrPort("198.51.100.11:80"): true, netip.MustParseAddrPort("[2001:db8:100::11]:80"): true}
	n.Served(cfg, up, quorums{svcKey(vip4, 80): true, svcKey(vip6, 80): true})
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	calls := sp.take()
	if last := calls[len(calls)-1]; last != "stop" {
		t.Errorf("last call %q, want stop", last)
	}
}

// TestNodeWithoutBGP: a configuration without a bgp section runs no
// speaker and shows no state.
func TestNodeWithoutBGP(t *testing.T) {
	n := Prepare(&service.Config{}, slog.New(slog.DiscardHandler), Options{Speaker: func(*slog.Logger) Speaker { t.Fatal("speaker built"); return nil }})
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n.Served(&service.Config{}, health{}, quorums{})
	if st := n.State(); st != nil {
		t.Errorf("State = %+v, want nil", st)
	}
	if err := n.Drain(true); err == nil {
		t.Error("Drain without a bgp section succeeded")
	}
	n.Stop()
}
