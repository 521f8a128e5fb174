package vrrp

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xlb-project/xlb/internal/testutil"
)

// inNS runs f on a thread moved into the named namespace; sockets opened
// there stay in it.
func inNS(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err)
		}
	}()
	f()
}

// TestRawConn sends advertisements over real sockets between two
// namespaces, IPv4 and IPv6 multicast, and checks what the receiver
// reports: the sender's source, the group, TTL/hop limit 255 and a
// payload whose checksum verifies.
func TestRawConn(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces")
	a, b := fmt.Sprintf("xlbva%d", os.Getpid()), fmt.Sprintf("xlbvb%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	for _, ns := range []string{a, b} {
		run("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b)
	run("-n", a, "addr", "add", "198.51.100.1/24", "dev", "eth0")
	run("-n", b, "addr", "add", "198.51.100.2/24", "dev", "eth0")
	run("-n", a, "addr", "add", "fe80::1/64", "dev", "eth0", "nodad")
	run("-n", b, "addr", "add", "fe80::2/64", "dev", "eth0", "nodad")
	for _, ns := range []string{a, b} {
		// Only the nodad link-local: the kernel's own would still be
		// tentative, and a tentative source is refused (EINVAL).
		run("-n", ns, "link", "set", "eth0", "addrgenmode", "none")
		run("-n", ns, "link", "set", "eth0", "up")
	}
	for _, tt := range []struct {
		v6   bool
		addr netip.Addr
		want netip.Addr
	}{
		{false, vip10, netip.MustParseAddr("198.51.100.1")},
		{true, v6a, netip.MustParseAddr("fe80::1")},
	} {
		t.Run(fmt.Sprintf("ipv6=%v", tt.v6), func(t *testing.T) {
			var snd, rcv *RawConn
			var err error
			inNS(t, a, func() { snd, err = Listen(ConnConfig{Interface: "eth0", IPv6: tt.v6}) })
			if err != nil {
				t.Fatal(err)
			}
			defer snd.Close()
			inNS(t, b, func() { rcv, err = Listen(ConnConfig{Interface: "eth0", IPv6: tt.v6}) })
			if err != nil {
				t.Fatal(err)
			}
			defer rcv.Close()
			if snd.LocalAddr() != tt.want {
				t.Errorf("source %v, want %v", snd.LocalAddr(), tt.want)
			}
			group := Group4
			if tt.v6 {
				group = Group6
			}
			adv := &Advertisement{Version: 3, VRID: 9, Priority: 100, AdvertInt: 100, Addrs: []netip.Addr{tt.addr}}
			pkt, err := adv.Marshal(snd.LocalAddr(), group)
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() {
				buf := make([]byte, 1500)
				n, src, dst, ttl, err := rcv.ReadFrom(buf)
				if err == nil {
					switch _, perr := Parse(buf[:n], src, dst); {
					case perr != nil:
						err = perr
					case src != tt.want || dst != group || ttl != 255:
						err = fmt.Errorf("received from %v to %v ttl %d, want from %v to %v ttl 255", src, dst, ttl, tt.want, group)
					}
				}
				got <- err
			}()
			// The receiver may not have joined yet when the first is sent.
			for range 20 {
				if err := snd.WriteTo(pkt, group); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-got:
					if err != nil {
						t.Fatal(err)
					}
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			t.Fatal("nothing received in 2 s")
		})
	}
}
