package daemon

import (
	"strings"
	"testing"
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
			v := newScriptVerdict(tc.rise, tc.fall, tc.initFail)
			var good, changes strings.Builder
			for _, r := range tc.runs {
				g, c := v.add(r == '+')
				good.WriteByte("FG"[b2i(g)])
				changes.WriteByte(" ^"[b2i(c)])
			}
			if good.String() != tc.good || changes.String() != tc.changes {
				t.Errorf("runs %s (rise %d, fall %d, init_fail %v):\n verdicts %q, want %q\n changes  %q, want %q",
					tc.runs, tc.rise, tc.fall, tc.initFail, good.String(), tc.good, changes.String(), tc.changes)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
