package main

import (
	"flag"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInterfacesFlag: -i repeats, takes comma lists, and refuses an empty
// name or one given twice.
func TestInterfacesFlag(t *testing.T) {
	tests := []struct {
		args    []string
		want    []string
		wantErr bool
	}{
		{args: []string{"-i", "eth0"}, want: []string{"eth0"}},
		{args: []string{"-i", "eth0", "-i", "eth1"}, want: []string{"eth0", "eth1"}},
		{args: []string{"-i", "eth0,eth1.100", "-i", "bond0"}, want: []string{"eth0", "eth1.100", "bond0"}},
		{args: []string{"-i", "eth0, eth1"}, want: []string{"eth0", "eth1"}},
		{args: []string{"-i", "eth0,"}, wantErr: true},
		{args: []string{"-i", "eth0", "-i", "eth0"}, wantErr: true},
		{args: []string{"-i", "eth0,eth1,eth0"}, wantErr: true},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var got interfaces
		fs.Var(&got, "i", "")
		err := fs.Parse(tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: error %v, want error %v", tt.args, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, []string(got)); !tt.wantErr && diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.args, diff)
		}
	}
}
