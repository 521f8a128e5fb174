package announce

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlb-project/xlb/internal/testutil"
)

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// inNS runs f on a thread moved into the named namespace.
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
			panic(err) // the thread is locked and would be reused in the wrong namespace
		}
	}()
	f()
}

// TestLinux adds and removes real addresses and captures the gratuitous
// ARPs and Neighbor Advertisements on the other end of a veth pair.
func TestLinux(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces")
	a, b := fmt.Sprintf("xlban%d", os.Getpid()), fmt.Sprintf("xlbbn%d", os.Getpid())
	ip(t, "netns", "add", a)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", a).Run() })
	ip(t, "netns", "add", b)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", b).Run() })
	ip(t, "link", "add", "eth0", "netns", a, "address", "02:00:00:00:00:02", "type", "veth", "peer", "name", "eth0", "netns", b)
	ip(t, "-n", a, "addr", "add", "198.51.100.2/24", "dev", "eth0")
	ip(t, "-n", a, "link", "set", "eth0", "up")
	ip(t, "-n", b, "link", "set", "eth0", "up")
	// The NA socket needs a usable link-local address.
	ip(t, "-n", a, "addr", "add", "fe80::2/64", "dev", "eth0", "nodad")

	frames := make(chan []byte, 100)
	inNS(t, b, func() {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := packet.Listen(ifi, packet.Raw, 0x0003 /* ETH_P_ALL */, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			for {
				buf := make([]byte, 1500)
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					close(frames)
					return
				}
				frames <- buf[:n]
			}
		}()
	})

	cfg := Config{
		Name: "test", Interface: "eth0", Repeat: 3, Delay: 5 * time.Second,
		VIPs: []VIP{
			{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Label: "eth0:vip"},
			{Prefix: netip.MustParsePrefix("2001:db8::10/64"), PreferredLft: new(time.Duration)},
		},
	}
	clock := newFakeClock()
	sender := NewRawSender()
	t.Cleanup(func() { sender.Close() })
	an := New(cfg, Options{Sender: sender, Clock: clock, Logger: quiet})
	var afterAcquire, afterRelease []netlink.Addr
	inNS(t, a, func() {
		if err := an.Acquire(); err != nil {
			t.Fatal(err)
		}
		clock.Advance(5 * time.Second)
		afterAcquire = addrs(t)
		if err := an.Release(); err != nil {
			t.Fatal(err)
		}
		afterRelease = addrs(t)
		if err := an.Release(); err != nil {
			t.Errorf("second Release: %v", err)
		}
	})
	has := func(list []netlink.Addr, p, label string) bool {
		for _, a := range list {
			if a.IPNet.String() == p && (label == "" || a.Label == label) {
				return true
			}
		}
		return false
	}
	if !has(afterAcquire, "192.0.2.10/32", "eth0:vip") || !has(afterAcquire, "2001:db8::10/64", "") {
		t.Errorf("addresses after Acquire: %v", afterAcquire)
	}
	for _, a := range afterAcquire {
		deprecated := a.PreferedLft == 0 && a.ValidLft != 0
		if want := a.IPNet.String() == "2001:db8::10/64"; a.IPNet.String() != "fe80::2/64" && deprecated != want {
			t.Errorf("%s: preferred_lft %d valid_lft %d; want deprecated %v", a.IPNet, a.PreferedLft, a.ValidLft, want)
		}
	}
	if has(afterRelease, "192.0.2.10/32", "") || has(afterRelease, "2001:db8::10/64", "") {
		t.Errorf("addresses after Release: %v", afterRelease)
	}

	var garps, nas int
	timeout := time.After(5 * time.Second)
	for garps < 6 || nas < 6 {
		var f []byte
		select {
		case f = <-frames:
		case <-timeout:
			t.Fatalf("saw %d gratuitous ARPs and %d NAs, want 6 each (two bursts of 3)", garps, nas)
		}
		var eth ethernet.Frame
		if eth.UnmarshalBinary(f) != nil {
			continue
		}
		switch eth.EtherType {
		case ethernet.EtherTypeARP:
			var p arp.Packet
			if p.UnmarshalBinary(eth.Payload) != nil {
				continue
			}
			vip := netip.MustParseAddr("192.0.2.10")
			if p.Operation == arp.OperationRequest && p.SenderIP == vip && p.TargetIP == vip &&
				p.SenderHardwareAddr.String() == "02:00:00:00:00:02" && eth.Destination.String() == "ff:ff:ff:ff:ff:ff" {
				garps++
			}
		case ethernet.EtherTypeIPv6:
			pl := eth.Payload
			// IPv6 header, ICMPv6 type 136 (NA), override flag, target.
			if len(pl) >= 64 && pl[6] == 58 && pl[7] == 255 && pl[40] == 136 && pl[44]&0x20 != 0 &&
				netip.AddrFrom16([16]byte(pl[48:64])) == netip.MustParseAddr("2001:db8::10") &&
				binary.BigEndian.Uint16(pl[24:26]) == 0xff02 && eth.Destination.String() == "33:33:00:00:00:01" {
				nas++
			}
		}
	}
}

func addrs(t *testing.T) []netlink.Addr {
	t.Helper()
	link, err := netlink.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return list
}
