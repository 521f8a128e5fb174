package api

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// seedState is the seed's setup (two web sites on shared real servers,
// wrr, inhibit_on_failure) with .8 failed: ipvsadm shows it at weight 0.
func seedState(taken time.Time, scale uint64) State {
	return State{
		Taken: taken,
		Services: []Service{
			{Proto: "TCP", Addr: "192.0.2.100", Port: 80, Scheduler: "wrr", Installed: true,
				Stats: Stats{Conns: 12 * scale, InPkts: 340 * scale, InBytes: 52_000 * scale},
				Backends: []Backend{
					{Addr: "198.51.100.7", Port: 80, Weight: 1, ConfigWeight: 1, ActiveConn: 3, InActConn: 1,
						Stats: Stats{Conns: 12 * scale, InPkts: 340 * scale, InBytes: 52_000 * scale}},
					{Addr: "198.51.100.8", Port: 80, Weight: 0, ConfigWeight: 1},
				}},
			{Proto: "TCP", Addr: "192.0.2.101", Port: 80, Scheduler: "wrr", Persistence: 50, Installed: true,
				Stats: Stats{Conns: 150_000_000 * scale, InPkts: 2_500_000_000 * scale, InBytes: 180_000_000_000_000 * scale},
				Backends: []Backend{
					{Addr: "198.51.100.7", Port: 80, Weight: 1, ConfigWeight: 1, ActiveConn: 0, InActConn: 0,
						Stats: Stats{Conns: 150_000_000 * scale, InPkts: 2_500_000_000 * scale, InBytes: 180_000_000_000_000 * scale}},
					{Addr: "198.51.100.8", Port: 80, Weight: 0, ConfigWeight: 1},
				}},
			{Proto: "UDP", Addr: "2001:db8:200::10", Port: 53, Scheduler: "sh", VLAN: 100, Installed: true,
				Backends: []Backend{
					{Addr: "2001:db8:100::11", Port: 53, Weight: 2, ConfigWeight: 2, Forward: "Route", InActConn: 7},
					// One hop away: tunnelled (ipvsadm -i).
					{Addr: "2001:db8:300::12", Port: 53, Weight: 1, ConfigWeight: 1, Forward: "Tunnel", InActConn: 2},
				}},
		},
	}
}

func TestWriteList(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	prev := seedState(t0, 1)
	cur := seedState(t0.Add(2*time.Second), 3)
	for _, tc := range []struct {
		name   string
		format ListFormat
		prev   *State
	}{
		{"list", ListDefault, nil},
		{"stats", ListStats, nil},
		{"rate", ListRate, &prev},
		{"rate-first", ListRate, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteList(&b, cur, tc.format, tc.prev); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			testutil.Golden(t, golden, b.Bytes())
		})
	}
}

func TestLargenum(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{
		{0, "       0"},
		{99_999_999, "99999999"},
		{100_000_000, " 100000K"},
		{999_999_999, " 999999K"},
		{1_000_000_000, "   1000M"},
		{100_000_000_000, "    100G"},
		{100_000_000_000_000, "    100T"},
	} {
		if got := largenum(tc.in); got != tc.want {
			t.Errorf("largenum(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWriteListOverrides: a runtime override adds its mark to the
// backend's line, and only then, so the ipvsadm layout stays parseable.
func TestWriteListOverrides(t *testing.T) {
	st := seedState(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), 1)
	st.Services[0].Backends[0].Override = "drained"
	st.Services[0].Backends[0].Weight = 0
	st.Services[2].Backends[0].Override = "weight 5"
	var b bytes.Buffer
	if err := WriteList(&b, st, ListDefault, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, filepath.Join("testdata", "list-overrides.golden"), b.Bytes())
}

// TestServerConns: a server's connections summed over its services, by
// address or address:port; the sorry server is not a real server.
func TestServerConns(t *testing.T) {
	st := seedState(time.Now(), 1)
	st.Services[1].Backends[0].ActiveConn = 4
	st.Services[1].Backends = append(st.Services[1].Backends, Backend{Addr: "198.51.100.9", Port: 80, Sorry: true, ActiveConn: 9})
	for _, tc := range []struct {
		server        string
		active, inact uint64
		found         bool
	}{
		{"198.51.100.7", 7, 1, true},
		{"198.51.100.7:80", 7, 1, true},
		{"198.51.100.7:81", 0, 0, false},
		{"2001:db8:100::11", 0, 7, true},
		{"[2001:db8:100::11]:53", 0, 7, true},
		{"198.51.100.9", 0, 0, false},
	} {
		a, i, f := st.ServerConns(tc.server)
		if a != tc.active || i != tc.inact || f != tc.found {
			t.Errorf("ServerConns(%s) = %d, %d, %v; want %d, %d, %v", tc.server, a, i, f, tc.active, tc.inact, tc.found)
		}
	}
}
