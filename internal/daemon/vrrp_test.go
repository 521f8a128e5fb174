package daemon

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

func TestResumeStates(t *testing.T) {
	const (
		I = vrrp.StateInit
		B = vrrp.StateBackup
		M = vrrp.StateMaster
		F = vrrp.StateFault
	)
	for _, tc := range []struct {
		name   string
		handed []vrrp.State
		groups []string
		want   []vrrp.State
	}{
		{"each as it was", []vrrp.State{M, B, F, I}, []string{"", "", "", ""}, []vrrp.State{M, B, F, I}},
		{"a new member of a master group", []vrrp.State{M, I}, []string{"G", "G"}, []vrrp.State{M, M}},
		{"a backup group stays backup", []vrrp.State{B, I}, []string{"G", "G"}, []vrrp.State{B, I}},
		{"only the master's group", []vrrp.State{M, I, B, I}, []string{"G", "G", "H", ""}, []vrrp.State{M, M, B, I}},
		{"a lone master does not pull in ungrouped instances", []vrrp.State{M, I}, []string{"", ""}, []vrrp.State{M, I}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resumeStates(tc.handed, tc.groups); !slices.Equal(got, tc.want) {
				t.Errorf("resumeStates(%v, %q) = %v, want %v", tc.handed, tc.groups, got, tc.want)
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
