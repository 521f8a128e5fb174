package service

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTimeouts(t *testing.T) {
	tests := []struct {
		in   string
		want Timeouts
		err  string
	}{
		{"", Timeouts{}, ""},
		{"tcp=1h,udp=30s", Timeouts{TCP: time.Hour, UDP: 30 * time.Second}, ""},
		{" tcp_fin=2m , syn_recv=1m,close=10s", Timeouts{TCPFin: 2 * time.Minute, SynRecv: time.Minute, Close: 10 * time.Second}, ""},
		{"tcpfin=2m", Timeouts{}, `timeouts: "tcpfin=2m": want NAME=DURATION with NAME one of tcp, tcp_fin, udp, syn_recv, close`},
		{"udp", Timeouts{}, `timeouts: "udp": want NAME=DURATION with NAME one of tcp, tcp_fin, udp, syn_recv, close`},
		{"udp=300", Timeouts{}, `timeouts: udp: "300" is not a duration (write e.g. 300s or 15m)`},
		{"udp=0s", Timeouts{}, "timeouts: udp: 0s is out of range (0, 8760h0m0s]"},
	}
	for _, tc := range tests {
		got, err := ParseTimeouts(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseTimeouts(%q): error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTimeouts(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseTimeouts(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestTimeoutsOverride(t *testing.T) {
	base := Timeouts{TCP: time.Hour, UDP: time.Minute}
	got := base.Override(Timeouts{UDP: 5 * time.Second, Close: time.Second})
	want := Timeouts{TCP: time.Hour, UDP: 5 * time.Second, Close: time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
