package status

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/reconcile"
	"github.com/xlb-project/xlb/internal/service"
)

// fakeDP serves counters from a table.
type fakeDP struct {
	stats map[uint32]datapath.Stats
}

func (f fakeDP) Counters() (map[datapath.Counter]uint64, error) { return nil, nil }
func (f fakeDP) ServiceStats(id uint32) (datapath.Stats, error) { return f.stats[1000+id], nil }
func (f fakeDP) BackendStats(id uint32) (datapath.Stats, error) { return f.stats[id], nil }

// TestBuild: backends are listed with what the balancer serves of them
// and the connections the sweep counted (the service lists their sums); one a
// failed check took out is not listed, an unresolved one is, and the sorry
// server is listed while it serves. Each is listed with its forwarding
// method from the configuration.
func TestBuild(t *testing.T) {
	vip, rs1, rs2, rs3, sorry := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.1"),
		netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.9")
	cfg := &service.Config{Services: []service.Service{{
		VIP: vip, Port: 80, Proto: service.TCP, Scheduler: "wrr",
		Backends: []service.Backend{{Addr: rs1, Port: 80, Weight: 2}, {Addr: rs2, Port: 80, Weight: 1},
			{Addr: rs3, Port: 80, Weight: 1, Forward: service.Forward{Method: service.Tunnel, Encap: service.GUE, Port: 6080}}},
		SorryServer: &service.SorryServer{Addr: sorry, Port: 80, Forward: service.Forward{Method: service.Tunnel}},
	}}}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	key := reconcile.DatapathKey(cfg.Services[0].Key())
	bst := balancer.State{Services: []balancer.ServiceState{{
		Service: balancer.Service{Key: key, Backends: []balancer.Backend{
			{Addr: rs1, Port: 80, Weight: 2, MAC: mac}, // rs2 was taken out
			{Addr: rs3, Port: 80, Weight: 1},           // unresolved
			{Addr: sorry, Port: 80, Weight: 1, MAC: mac},
		}},
		ID: 7, Installed: true, BackendIDs: []uint32{11, 0, 12},
	}}}
	dp := fakeDP{stats: map[uint32]datapath.Stats{1007: {Packets: 9}, 11: {Packets: 5, Flows: 2}, 12: {Packets: 4}}}
	conns := map[uint32]datapath.Conns{11: {Active: 1, Inactive: 1}, 12: {Active: 1}}
	got, err := Build(cfg, bst, dp, conns, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Service{{
		Proto: "TCP", Addr: "192.0.2.10", Port: 80, Scheduler: "wrr", Installed: true, Stats: api.Stats{InPkts: 9},
		ActiveConn: 2, InActConn: 1,
		Backends: []api.Backend{
			{Addr: "198.51.100.1", Port: 80, Weight: 2, ConfigWeight: 2, MAC: mac.String(), Forward: "Route", ActiveConn: 1, InActConn: 1, Stats: api.Stats{InPkts: 5, Conns: 2}},
			{Addr: "198.51.100.3", Port: 80, ConfigWeight: 1, Forward: "Tunnel", Unresolved: true},
			{Addr: "198.51.100.9", Port: 80, Weight: 1, ConfigWeight: 1, MAC: mac.String(), Forward: "Tunnel", Sorry: true, ActiveConn: 1, Stats: api.Stats{InPkts: 4}},
		},
	}}
	if diff := cmp.Diff(want, got.Services, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}
