package notify

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/service"
)

// TestOmega: at shutdown only services with omega run scripts: the
// notify_down of each backend still up and quorum_down while the quorum
// is held; wait returns once they have all ended.
func TestOmega(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "mark.sh")
	if err := os.WriteFile(mark, []byte("#!/bin/sh\nsleep 0.2\ntouch \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	line := func(name string) string { return mark + " " + filepath.Join(dir, name) }
	rs := func(last byte) service.Backend {
		a := netip.AddrFrom4([4]byte{198, 51, 100, last})
		return service.Backend{Addr: a, Port: 80, NotifyDown: line("down-" + a.String()), NotifyUp: line("up-" + a.String())}
	}
	svc := func(vip byte, omega bool) service.Service {
		return service.Service{
			VIP: netip.AddrFrom4([4]byte{192, 0, 2, vip}), Port: 80, Proto: service.TCP, Omega: omega,
			QuorumDown: line("quorum-down-" + netip.AddrFrom4([4]byte{192, 0, 2, vip}).String()),
			Backends:   []service.Backend{rs(vip*10 + 1), rs(vip*10 + 2)},
		}
	}
	services := []service.Service{svc(1, true), svc(2, true), svc(3, false)}
	down := map[netip.AddrPort]bool{netip.MustParseAddrPort("198.51.100.12:80"): true}
	up := func(_ service.ServiceKey, be netip.AddrPort) bool { return !down[be] }
	holds := func(k service.ServiceKey) bool { return k.VIP == netip.MustParseAddr("192.0.2.1") }

	Runner{Log: slog.New(slog.DiscardHandler)}.Omega(services, up, holds)()

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, e := range entries {
		if e.Name() != "mark.sh" {
			ran = append(ran, e.Name())
		}
	}
	slices.Sort(ran)
	want := []string{"down-198.51.100.11", "down-198.51.100.21", "down-198.51.100.22", "quorum-down-192.0.2.1"}
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("scripts that had ended when wait returned (-want +got):\n%s", diff)
	}
}
