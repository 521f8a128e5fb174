package daemon

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// TestScriptVerdict runs sequences of vrrp_script results (+ success,
// - failure) through scriptVerdict and checks the verdict after each and
// where it changed (^), as keepalived counts rise and fall.
func TestScriptVerdict(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rise, fall int
		initFail   bool
		runs       string
		// good is the verdict after each run (G good, F failed);
		// changes marks the runs that change it (^).
		good, changes string
	}{
		{"first success decides", 2, 2, false, "+", "G", "^"},
		{"first failure decides", 2, 2, false, "-", "F", "^"},
		{"fall failures in a row", 2, 3, false, "+---", "GGGF", "^  ^"},
		{"a success restarts the fall count", 2, 3, false, "+--+--+", "GGGGGGG", "^      "},
		{"rise successes in a row", 3, 1, false, "-+++", "FFFG", "^  ^"},
		{"a failure restarts the rise count", 3, 1, false, "-++-+++", "FFFFFFG", "^     ^"},
		{"rise and fall 1 follow each run", 1, 1, false, "+-+-", "GFGF", "^^^^"},
		{"init_fail must rise", 2, 2, true, "+", "F", " "},
		{"init_fail rises", 2, 2, true, "++", "FG", " ^"},
		{"init_fail stays failed without a change", 2, 2, true, "-+-", "FFF", "   "},
		{"init_fail with rise 1", 1, 1, true, "+", "G", "^"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good, changes := verdicts(newScriptVerdict(tc.rise, tc.fall, tc.initFail), tc.runs)
			if good != tc.good || changes != tc.changes {
				t.Errorf("runs %s (rise %d, fall %d, init_fail %v):\n verdicts %q, want %q\n changes  %q, want %q",
					tc.runs, tc.rise, tc.fall, tc.initFail, good, tc.good, changes, tc.changes)
			}
		})
	}
}

// verdicts feeds runs (+ success, - failure) to v and returns the verdict
// after each (G good, F failed) and where it changed (^).
func verdicts(v *scriptVerdict, runs string) (good, changes string) {
	var g, c strings.Builder
	for _, r := range runs {
		ok, changed := v.add(r == '+')
		g.WriteByte("FG"[b2i(ok)])
		c.WriteByte(" ^"[b2i(changed)])
	}
	return g.String(), c.String()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCarriedVerdict: a verdict carried over a reload stands until the
// runs change it by the usual counts, and is not reported again by the
// first run (that would be no change).
func TestCarriedVerdict(t *testing.T) {
	for _, tc := range []struct {
		name           string
		rise, fall     int
		good           bool
		runs           string
		verdicts, mark string
	}{
		{"good stays good", 2, 2, true, "+-+", "GGG", "   "},
		{"good fails after fall failures", 2, 2, true, "--", "GF", " ^"},
		{"failed stays failed", 2, 2, false, "-+-", "FFF", "   "},
		{"failed rises after rise successes", 2, 2, false, "++", "FG", " ^"},
		{"rise and fall 1", 1, 1, true, "-+", "FG", "^^"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, mark := verdicts(carriedVerdict(tc.rise, tc.fall, tc.good), tc.runs)
			if got != tc.verdicts || mark != tc.mark {
				t.Errorf("runs %s: verdicts %q changes %q, want %q %q", tc.runs, got, mark, tc.verdicts, tc.mark)
			}
		})
	}
}

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
