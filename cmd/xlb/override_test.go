package main

import (
	"flag"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseInterleaved: flags may come before or after the server, as
// ipvsadm users type them.
func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		wait bool
	}{
		{[]string{"rs1", "--wait"}, []string{"rs1"}, true},
		{[]string{"--wait", "rs1"}, []string{"rs1"}, true},
		{[]string{"rs1", "5", "--socket", "/s"}, []string{"rs1", "5"}, false},
		{[]string{"rs1"}, []string{"rs1"}, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		wait := fs.Bool("wait", false, "")
		fs.String("socket", "", "")
		pos, err := parseInterleaved(fs, tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if diff := cmp.Diff(tc.pos, pos); diff != "" || *wait != tc.wait {
			t.Errorf("%v: positional (-want +got):\n%s wait %v, want %v", tc.args, diff, *wait, tc.wait)
		}
	}
}

// TestOverrideUsage: bad command lines are refused before the daemon is
// asked anything.
func TestOverrideUsage(t *testing.T) {
	for _, args := range [][]string{
		{"weight", "198.51.100.11"},
		{"weight", "198.51.100.11", "heavy"},
		{"weight", "--reset"},
		{"drain"},
		{"drain", "a", "b"},
		{"undrain"},
	} {
		if code := run(args, io.Discard, io.Discard); code != 2 {
			t.Errorf("xlb %v: exit %d, want 2", args, code)
		}
	}
}
