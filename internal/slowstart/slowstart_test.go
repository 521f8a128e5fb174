package slowstart

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/service"
)

// TestRamp: a backend that comes back up in a service with slow_start is
// served at 1/Steps, 2/Steps, ... of its weight relative to the others,
// then at its weight; other services and a backend that went down are not
// touched.
func TestRamp(t *testing.T) {
	svc := service.ServiceKey{VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP}
	other := service.ServiceKey{VIP: netip.MustParseAddr("192.0.2.11"), Port: 80, Proto: service.TCP}
	rs1, rs2 := netip.MustParseAddrPort("198.51.100.11:80"), netip.MustParseAddrPort("198.51.100.12:80")
	t0 := time.Unix(1000, 0)
	now := t0
	r := New(nil, nil)
	r.now = func() time.Time { return now }

	weights := func() []int {
		return []int{r.Weight(svc, rs1, 2), r.Weight(svc, rs2, 3), r.Weight(other, rs1, 2)}
	}
	if diff := cmp.Diff([]int{2, 3, 2}, weights()); diff != "" {
		t.Fatalf("before any ramp (-want +got):\n%s", diff)
	}
	r.HealthChanged(healthcheck.Event{Service: svc, Backend: rs1, Up: true, Changed: true}, 10*time.Second)
	for _, tc := range []struct {
		at   time.Duration
		want []int
	}{
		{0, []int{2 * 1, 3 * Steps, 2}},
		{999 * time.Millisecond, []int{2 * 1, 3 * Steps, 2}},
		{time.Second, []int{2 * 2, 3 * Steps, 2}},
		{5500 * time.Millisecond, []int{2 * 6, 3 * Steps, 2}},
		{9999 * time.Millisecond, []int{2 * Steps, 3 * Steps, 2}},
		{10 * time.Second, []int{2, 3, 2}},
	} {
		now = t0.Add(tc.at)
		if diff := cmp.Diff(tc.want, weights()); diff != "" {
			t.Errorf("at %v (-want +got):\n%s", tc.at, diff)
		}
	}

	now = t0.Add(time.Minute)
	r.HealthChanged(healthcheck.Event{Service: svc, Backend: rs1, Up: true, Changed: true}, 10*time.Second)
	r.HealthChanged(healthcheck.Event{Service: svc, Backend: rs1, Up: false, Changed: true}, 10*time.Second)
	if diff := cmp.Diff([]int{2, 3, 2}, weights()); diff != "" {
		t.Errorf("a backend that went down mid-ramp still ramps (-want +got):\n%s", diff)
	}
	r.HealthChanged(healthcheck.Event{Service: svc, Backend: rs1, Up: true, Changed: true}, 0)
	if diff := cmp.Diff([]int{2, 3, 2}, weights()); diff != "" {
		t.Errorf("slow_start 0 ramps (-want +got):\n%s", diff)
	}
}
