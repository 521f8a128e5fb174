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
