package healthcheck

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// vips are the addresses probes must never leave from: the VIPs of the
// configuration. A VIP on the balancer's interface (added by VRRP, or by
// hand as users do) can be the kernel's choice of source, an IPv6 /128
// inside the real servers' /64 always is (longest match), and a real
// server answers a probe from a VIP to its own loopback, where the VIP
// lives: the probe fails and the backend goes down.
type vips struct {
	set atomic.Pointer[[]netip.Addr] // sorted
}

func (v *vips) store(addrs []netip.Addr) {
	s := slices.Clone(addrs)
	slices.SortFunc(s, netip.Addr.Compare)
	s = slices.Compact(s)
	v.set.Store(&s)
}

func (v *vips) has(a netip.Addr) bool {
	s := v.set.Load()
	if s == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(*s, a.Unmap(), netip.Addr.Compare)
	return ok
}

// sourceFor returns the address a probe to dst binds to: the zero Addr
// when the kernel's own choice is no VIP, else an address of the route's
// interface that is not a VIP, not deprecated and not tentative, one whose
// prefix holds dst if there is one.
func (v *vips) sourceFor(dst netip.Addr) (netip.Addr, error) {
	dst = dst.Unmap()
	if src, ok := kernelSource(dst); !ok || !v.has(src) {
		return netip.Addr{}, nil // the kernel's choice, or the dial says what is wrong
	}
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, nil
	}
	r := routes[0]
	family := netlink.FAMILY_V4
	if dst.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: r.LinkIndex}}, family)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("source address toward %s: %w", dst, err)
	}
	var best netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || v.has(ip.Unmap()) || a.Scope != unix.RT_SCOPE_UNIVERSE ||
			a.Flags&(unix.IFA_F_DEPRECATED|unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		ip = ip.Unmap()
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(ip, ones).Contains(dst) {
			return ip, nil
		}
		if !best.IsValid() {
			best = ip
		}
	}
	if !best.IsValid() {
		return netip.Addr{}, fmt.Errorf("source address toward %s: every address of its interface is a VIP", dst)
	}
	return best, nil
}

// kernelSource is the source address the kernel picks toward dst: that of
// a connected UDP socket, which sends nothing.
func kernelSource(dst netip.Addr) (netip.Addr, bool) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), true
}
