package ha

import (
	"slices"
	"testing"

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
