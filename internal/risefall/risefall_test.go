package risefall

import (
	"strings"
	"testing"
)

// TestUndecided runs sequences of results (+ success, - failure) through
// a fresh counter (an Undecided one, or a failed one for init_fail) and
// checks the verdict after each and where it changed (^), as keepalived
// counts a vrrp_script's rise and fall.
func TestUndecided(t *testing.T) {
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
			c := Undecided(tc.rise, tc.fall)
			if tc.initFail {
				c = New(tc.rise, tc.fall, false)
			}
			good, changes := verdicts(&c, tc.runs)
			if good != tc.good || changes != tc.changes {
				t.Errorf("runs %s (rise %d, fall %d, init_fail %v):\n verdicts %q, want %q\n changes  %q, want %q",
					tc.runs, tc.rise, tc.fall, tc.initFail, good, tc.good, changes, tc.changes)
			}
		})
	}
}

// verdicts feeds runs (+ success, - failure) to c and returns the verdict
// after each (G good, F failed) and where it changed (^).
func verdicts(c *Counter, runs string) (good, changes string) {
	var g, ch strings.Builder
	for _, r := range runs {
		ok, changed := c.Add(r == '+')
		g.WriteByte("FG"[b2i(ok)])
		ch.WriteByte(" ^"[b2i(changed)])
	}
	return g.String(), ch.String()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestNew: a verdict carried over a reload stands until the runs change
// it by the usual counts, and is not reported again by the first run
// (that would be no change).
func TestNew(t *testing.T) {
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
		{"rise and fall below 1 count as 1", 0, -1, true, "-+", "FG", "^^"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(tc.rise, tc.fall, tc.good)
			got, mark := verdicts(&c, tc.runs)
			if got != tc.verdicts || mark != tc.mark {
				t.Errorf("runs %s: verdicts %q changes %q, want %q %q", tc.runs, got, mark, tc.verdicts, tc.mark)
			}
		})
	}
}
