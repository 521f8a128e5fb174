package ha

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/config"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// TestChanged: a reload rebuilds VRRP when a setting changed, and not
// when the blocks only moved in the file.
func TestChanged(t *testing.T) {
	const base = `vrrp_script chk {
    script "/bin/true"
}
vrrp_sync_group G {
    group {
        VI_1
    }
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.10/32
    }
    track_script {
        chk
    }
    track_interface {
        eth0
    }
}
`
	tests := []struct {
		name    string
		text    string
		changed bool
	}{
		{"moved down by a comment", "! a comment\n\n" + base, false},
		{"priority", strings.Replace(base, "priority 100", "priority 101", 1), true},
		{"address", strings.Replace(base, "192.0.2.10/32", "192.0.2.11/32", 1), true},
		{"script", strings.Replace(base, "/bin/true", "/bin/false", 1), true},
	}
	// One file for all: its name is part of the positions.
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	loadAt := func(t *testing.T, text string) *service.Config {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Load(path, config.FormatKeepalived)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	old := loadAt(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadAt(t, tt.text)
			if !tt.changed && reflect.DeepEqual(old.VRRP, cfg.VRRP) {
				t.Fatal("the blocks did not move; the case tests nothing")
			}
			if got := Changed(old, cfg); got != tt.changed {
				t.Errorf("changed %v, want %v", got, tt.changed)
			}
		})
	}
}

func TestAnnounceConfig(t *testing.T) {
	in := service.VRRPInstance{
		Name: "VI_9", Interface: "eth3", GARPMasterDelay: 5 * time.Second, GARPMasterRepeat: 5, GARPMasterRefresh: time.Minute, GARPMasterRefreshRepeat: 2,
		VirtualIPs: []service.VirtualIP{
			{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Source: service.Pos{File: "c", Line: 3}},
			{Prefix: netip.MustParsePrefix("192.0.2.11/24"), Dev: "eth4", Label: "eth4:vip"},
		},
	}
	want := announce.Config{
		Name: "vrrp_instance VI_9", Interface: "eth3", Repeat: 5, Delay: 5 * time.Second, Refresh: time.Minute, RefreshRepeat: 2,
		VIPs: []announce.VIP{
			{Prefix: netip.MustParsePrefix("192.0.2.10/32")},
			{Prefix: netip.MustParsePrefix("192.0.2.11/24"), Dev: "eth4", Label: "eth4:vip"},
		},
	}
	if diff := cmp.Diff(want, announceConfig(in), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("announceConfig (-want +got):\n%s", diff)
	}
}

func TestInstanceConfig(t *testing.T) {
	at := service.Pos{File: "k.conf", Line: 9}
	in := service.VRRPInstance{
		Name: "VI_9", State: "MASTER", Interface: "eth3", VirtualRouterID: 200, Priority: 150,
		AdvertInt: 2 * time.Second, Version: 2, Preempt: true, PreemptDelay: time.Minute,
		Auth: &service.VRRPAuth{Type: "PASS", Pass: "secret"},
		VirtualIPs: []service.VirtualIP{
			{Prefix: netip.MustParsePrefix("192.0.2.10/24"), Dev: "eth4", Source: at},
			{Prefix: netip.MustParsePrefix("192.0.2.11/32")},
		},
		UnicastPeers:        []netip.Addr{netip.MustParseAddr("198.51.100.2")},
		CheckUnicastSrc:     true,
		TrackScripts:        []service.Track{{Name: "chk", Weight: -20, Source: at}},
		TrackInterfaces:     []service.Track{{Name: "eth3"}},
		GARPLowerPrioRepeat: 2, SkipCheckAdvAddr: true, LowerPrioNoAdvert: true, HigherPrioSendAdvert: true,
		Notify: service.Notify{Master: "/bin/true"}, Source: at,
	}
	want := vrrp.Config{
		Name: "VI_9", VRID: 200, Priority: 150, AdvertInt: 2 * time.Second, Version: 2,
		Preempt: true, PreemptDelay: time.Minute, PassAuth: true, Password: "secret",
		Addrs:        []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")},
		UnicastPeers: []netip.Addr{netip.MustParseAddr("198.51.100.2")}, CheckUnicastSrc: true,
		TrackScripts:     []vrrp.Track{{Name: "chk", Weight: -20}},
		TrackInterfaces:  []vrrp.Track{{Name: "eth3"}},
		SkipCheckAdvAddr: true, LowerPrioNoAdvert: true, HigherPrioSendAdvert: true, LowerPrioReannounce: true,
	}
	if diff := cmp.Diff(want, instanceConfig(in), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("instanceConfig (-want +got):\n%s", diff)
	}
	in.Auth, in.GARPLowerPrioRepeat = nil, 0
	if got := instanceConfig(in); got.PassAuth || got.Password != "" || got.LowerPrioReannounce {
		t.Errorf("without authentication or garp_lower_prio_repeat: %+v", got)
	}
}
