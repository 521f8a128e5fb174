package neigh

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeResolver answers for the addresses in macs and blocks until the
// context ends for the others, counting calls.
type fakeResolver struct {
	macs  map[netip.Addr]net.HardwareAddr
	calls atomic.Int32
}

func (f *fakeResolver) Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	f.calls.Add(1)
	if m, ok := f.macs[ip]; ok {
		return m, nil
	}
	<-ctx.Done()
	return nil, errors.New("no answer")
}

func TestCache(t *testing.T) {
	a, b, c := netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.12"), netip.MustParseAddr("198.51.100.13")
	macA, macB, macA2 := net.HardwareAddr{2, 0, 0, 0, 0, 0x11}, net.HardwareAddr{2, 0, 0, 0, 0, 0x12}, net.HardwareAddr{2, 0, 0, 0, 0, 0x21}
	res := &fakeResolver{macs: map[netip.Addr]net.HardwareAddr{a: macA, b: macB}}
	cache := NewCache(res, 50*time.Millisecond, nil)
	addrs := []netip.Addr{a, b, c}
	eq := cmpopts.EquateComparable(netip.Addr{})

	cache.Resolve(context.Background(), addrs)
	if diff := cmp.Diff(map[netip.Addr]net.HardwareAddr{a: macA, b: macB}, cache.MACs(), eq); diff != "" {
		t.Errorf("after Resolve (-want +got):\n%s", diff)
	}
	if !cache.Missing(addrs) || cache.Missing(addrs[:2]) {
		t.Errorf("Missing: %v for all, %v for the resolved ones; want true, false", cache.Missing(addrs), cache.Missing(addrs[:2]))
	}
	// Only what is missing is asked again.
	res.calls.Store(0)
	cache.Resolve(context.Background(), addrs)
	if n := res.calls.Load(); n != 1 {
		t.Errorf("second Resolve asked %d times, want once (for %s)", n, c)
	}

	for _, tc := range []struct {
		name    string
		ch      Change
		old     net.HardwareAddr
		changed bool
	}{
		{"an address not forwarded to", Change{IP: netip.MustParseAddr("203.0.113.1"), MAC: macA2}, nil, false},
		{"an entry going away", Change{IP: a}, nil, false},
		{"the same MAC", Change{IP: a, MAC: macA}, nil, false},
		{"a new MAC", Change{IP: a, MAC: macA2}, macA, true},
		{"a first MAC for an unresolved address", Change{IP: c, MAC: macB}, nil, true},
	} {
		old, changed := cache.Update(tc.ch, addrs)
		if changed != tc.changed || !slicesEqual(old, tc.old) {
			t.Errorf("%s: Update = %v, %v; want %v, %v", tc.name, old, changed, tc.old, tc.changed)
		}
	}
	if diff := cmp.Diff(map[netip.Addr]net.HardwareAddr{a: macA2, b: macB, c: macB}, cache.MACs(), eq); diff != "" {
		t.Errorf("after the updates (-want +got):\n%s", diff)
	}
}

func slicesEqual(a, b net.HardwareAddr) bool { return string(a) == string(b) }
