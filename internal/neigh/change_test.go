package neigh

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestChange(t *testing.T) {
	const idx = 4
	r := &Resolver{}
	r.ifi.Store(&net.Interface{Index: idx, Name: "eth0"})
	macA := net.HardwareAddr{2, 0, 0, 0, 0, 0x11}
	macB := net.HardwareAddr{2, 0, 0, 0, 0, 0x77}
	ip := netip.MustParseAddr("198.51.100.11")
	ip6 := netip.MustParseAddr("2001:db8:100::11")
	msg := func(typ uint16, a netip.Addr, state int, mac net.HardwareAddr) netlink.NeighUpdate {
		fam := unix.AF_INET
		if a.Is6() {
			fam = unix.AF_INET6
		}
		return netlink.NeighUpdate{Type: typ, Neigh: netlink.Neigh{LinkIndex: idx, Family: fam, IP: a.AsSlice(), State: state, HardwareAddr: mac}}
	}
	add := func(a netip.Addr, state int, mac net.HardwareAddr) netlink.NeighUpdate {
		return msg(unix.RTM_NEWNEIGH, a, state, mac)
	}
	otherLink := add(ip, netlink.NUD_REACHABLE, macA)
	otherLink.Neigh.LinkIndex = idx + 1
	bridgeFDB := add(ip, netlink.NUD_REACHABLE, macA)
	bridgeFDB.Neigh.Family = unix.AF_BRIDGE
	proxy := add(ip, netlink.NUD_REACHABLE, macA)
	proxy.Neigh.Flags = netlink.NTF_PROXY

	tests := []struct {
		name    string
		updates []netlink.NeighUpdate
		want    []Change
	}{
		{"first sighting reports", []netlink.NeighUpdate{add(ip, netlink.NUD_REACHABLE, macA)},
			[]Change{{ip, macA}}},
		{"state changes with the same MAC are quiet", []netlink.NeighUpdate{
			add(ip, netlink.NUD_REACHABLE, macA), add(ip, netlink.NUD_STALE, macA),
			add(ip, netlink.NUD_DELAY, macA), add(ip, netlink.NUD_PROBE, macA), add(ip, netlink.NUD_REACHABLE, macA),
		}, []Change{{ip, macA}}},
		{"new MAC reports", []netlink.NeighUpdate{add(ip, netlink.NUD_REACHABLE, macA), add(ip, netlink.NUD_STALE, macB)},
			[]Change{{ip, macA}, {ip, macB}}},
		{"failure reports nil once, then the new MAC", []netlink.NeighUpdate{
			add(ip, netlink.NUD_REACHABLE, macA), add(ip, netlink.NUD_FAILED, nil), add(ip, netlink.NUD_FAILED, nil),
			add(ip, netlink.NUD_INCOMPLETE, nil), add(ip, netlink.NUD_REACHABLE, macB),
		}, []Change{{ip, macA}, {ip, nil}, {ip, macB}}},
		{"failure of an unknown address is quiet", []netlink.NeighUpdate{add(ip, netlink.NUD_FAILED, nil)}, nil},
		{"failed then back with the same MAC reports it", []netlink.NeighUpdate{
			add(ip, netlink.NUD_REACHABLE, macA), add(ip, netlink.NUD_FAILED, nil), add(ip, netlink.NUD_REACHABLE, macA),
		}, []Change{{ip, macA}, {ip, nil}, {ip, macA}}},
		{"deletion is quiet and remembered MAC stays", []netlink.NeighUpdate{
			add(ip, netlink.NUD_REACHABLE, macA), msg(unix.RTM_DELNEIGH, ip, netlink.NUD_STALE, macA), add(ip, netlink.NUD_REACHABLE, macA),
		}, []Change{{ip, macA}}},
		{"noarp entries carry no neighbour", []netlink.NeighUpdate{add(ip, netlink.NUD_NOARP, macA)}, nil},
		{"zero and multicast MACs ignored", []netlink.NeighUpdate{
			add(ip, netlink.NUD_REACHABLE, make(net.HardwareAddr, 6)), add(ip, netlink.NUD_REACHABLE, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}),
		}, nil},
		{"other links, bridge fdb and proxy entries ignored", []netlink.NeighUpdate{otherLink, bridgeFDB, proxy}, nil},
		{"ipv6", []netlink.NeighUpdate{add(ip6, netlink.NUD_STALE, macA), add(ip6, netlink.NUD_REACHABLE, macB)},
			[]Change{{ip6, macA}, {ip6, macB}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := make(map[netip.Addr]string)
			var got []Change
			for _, u := range tt.updates {
				if c, ok := r.change(u, last); ok {
					got = append(got, c)
				}
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveRejectsNonUnicast(t *testing.T) {
	r := &Resolver{}
	r.ifi.Store(&net.Interface{Index: 1, Name: "eth0"})
	for _, s := range []string{"0.0.0.0", "224.0.0.18", "127.0.0.1", "ff02::1", "::"} {
		_, err := r.Resolve(context.Background(), netip.MustParseAddr(s))
		if err == nil || !strings.Contains(err.Error(), s) || !strings.Contains(err.Error(), "eth0") {
			t.Errorf("Resolve(%s) error = %v, want one naming the address and eth0", s, err)
		}
	}
}
