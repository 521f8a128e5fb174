package override

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/service"
)

func testConfig(backends ...string) *service.Config {
	s := service.Service{VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP}
	for _, b := range backends {
		ap := netip.MustParseAddrPort(b)
		s.Backends = append(s.Backends, service.Backend{Addr: ap.Addr(), Port: ap.Port(), Weight: 1})
	}
	return &service.Config{Services: []service.Service{s}}
}

func u32(v uint32) *uint32 { return &v }

// TestChange: each request and what it leaves in force; a rejected one
// changes nothing.
func TestChange(t *testing.T) {
	cfg := testConfig("198.51.100.11:80", "198.51.100.12:80", "198.51.100.12:8080")
	rs1 := netip.MustParseAddrPort("198.51.100.11:80")
	rs2alt := netip.MustParseAddrPort("198.51.100.12:8080")
	tests := []struct {
		name     string
		reqs     []api.OverrideRequest
		applyErr error
		wantErr  string
		want     []api.Override
		weights  map[netip.AddrPort]int // served weight from configured 1
	}{
		{name: "drain", reqs: []api.OverrideRequest{{Server: "198.51.100.11", Action: api.ActionDrain}},
			want: []api.Override{{Server: "198.51.100.11", Drained: true}}, weights: map[netip.AddrPort]int{rs1: 0}},
		{name: "drain then undrain leaves nothing", reqs: []api.OverrideRequest{
			{Server: "198.51.100.11", Action: api.ActionDrain}, {Server: "198.51.100.11", Action: api.ActionUndrain}},
			want: []api.Override{}, weights: map[netip.AddrPort]int{rs1: 1}},
		{name: "weight of one port", reqs: []api.OverrideRequest{{Server: "198.51.100.12:8080", Action: api.ActionWeight, Weight: u32(5)}},
			want: []api.Override{{Server: "198.51.100.12:8080", Weight: u32(5)}}, weights: map[netip.AddrPort]int{rs2alt: 5, rs1: 1}},
		{name: "drain wins over a weight, undrain restores it", reqs: []api.OverrideRequest{
			{Server: "198.51.100.11", Action: api.ActionWeight, Weight: u32(7)}, {Server: "198.51.100.11", Action: api.ActionDrain},
			{Server: "198.51.100.11", Action: api.ActionUndrain}},
			want: []api.Override{{Server: "198.51.100.11", Weight: u32(7)}}, weights: map[netip.AddrPort]int{rs1: 7}},
		{name: "unknown server", reqs: []api.OverrideRequest{{Server: "198.51.100.99", Action: api.ActionDrain}},
			wantErr: "server: 198.51.100.99 is not a real server", want: []api.Override{}},
		{name: "not an address", reqs: []api.OverrideRequest{{Server: "rs1", Action: api.ActionDrain}},
			wantErr: `server: server "rs1": not an address`, want: []api.Override{}},
		{name: "bad action", reqs: []api.OverrideRequest{{Server: "198.51.100.11", Action: "delete"}},
			wantErr: `action: "delete" is not`, want: []api.Override{}},
		{name: "weight too large", reqs: []api.OverrideRequest{{Server: "198.51.100.11", Action: api.ActionWeight, Weight: u32(1 << 31)}},
			wantErr: "weight: 2147483648 is above", want: []api.Override{}},
		{name: "apply fails: nothing changes", reqs: []api.OverrideRequest{{Server: "198.51.100.11", Action: api.ActionDrain}},
			applyErr: errors.New("no room"), wantErr: "server 198.51.100.11: no room", want: []api.Override{}, weights: map[netip.AddrPort]int{rs1: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			var err2 error
			for _, r := range tc.reqs {
				err2 = s.Change(r, cfg, func() error { return tc.applyErr })
			}
			if tc.wantErr == "" && err2 != nil || tc.wantErr != "" && (err2 == nil || !strings.Contains(err2.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err2, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, s.List()); diff != "" {
				t.Errorf("overrides (-want +got):\n%s", diff)
			}
			for be, w := range tc.weights {
				if got := s.Weight(service.ServiceKey{}, be, 1); got != w {
					t.Errorf("weight of %s = %d, want %d", be, got, w)
				}
			}
			// What is in force is what a restart reads back.
			again, err := Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s.List(), again.List()); diff != "" {
				t.Errorf("reopened (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPrune: a reload that removes a server drops its override, and the
// file says so.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, nil)
	cfg := testConfig("198.51.100.11:80", "198.51.100.12:80")
	for _, srv := range []string{"198.51.100.11", "198.51.100.12:80"} {
		if err := s.Change(api.OverrideRequest{Server: srv, Action: api.ActionDrain}, cfg, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	dropped, err := s.Prune(testConfig("198.51.100.12:80"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.51.100.11"}, dropped); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
	again, _ := Open(dir, nil)
	if diff := cmp.Diff([]api.Override{{Server: "198.51.100.12:80", Drained: true}}, again.List()); diff != "" {
		t.Errorf("persisted (-want +got):\n%s", diff)
	}
}

// TestOpenRefuses: a file this build cannot read stops the start rather
// than losing the operator's drains silently.
func TestOpenRefuses(t *testing.T) {
	for name, body := range map[string]string{
		"torn":        `{"version":1,"overr`,
		"version":     `{"version":2,"overrides":[]}`,
		"bad address": `{"version":1,"overrides":[{"server":"rs1","drained":true}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(dir, nil); err == nil {
				t.Fatal("opened")
			}
		})
	}
}
