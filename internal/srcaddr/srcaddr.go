// Package srcaddr picks the address the balancer sends from toward a host
// (a health check's source, a tunnel's outer source): the kernel's choice,
// unless that is a VIP.
package srcaddr

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Picker knows the addresses nothing may leave from: the VIPs of the
// configuration. A VIP on the balancer's interface (added by VRRP, or by
// hand as users do) can be the kernel's choice of source, an IPv6 /128
// inside the real servers' /64 always is (longest match), and a real
// server answers a probe from a VIP to its own loopback, where the VIP
// lives: the probe fails and the backend goes down.
type Picker struct {
	set atomic.Pointer[[]netip.Addr] // sorted
}

// SetVIPs replaces the addresses never to send from.
func (v *Picker) SetVIPs(addrs []netip.Addr) {
	s := slices.Clone(addrs)
	slices.SortFunc(s, netip.Addr.Compare)
	s = slices.Compact(s)
	v.set.Store(&s)
}

func (v *Picker) has(a netip.Addr) bool {
	s := v.set.Load()
	if s == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(*s, a.Unmap(), netip.Addr.Compare)
	return ok
}

// Override returns the address a socket toward dst binds to: the zero Addr
// when the kernel's own choice is no VIP, else an address of the route's
// interface that is not a VIP, not deprecated and not tentative, one whose
// prefix holds dst if there is one.
func (v *Picker) Override(dst netip.Addr) (netip.Addr, error) {
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

// Source returns the address packets the balancer builds toward dst
// leave from, e.g. a tunnel's outer source: the kernel's choice unless
// that is a VIP, then Override's.
func (v *Picker) Source(dst netip.Addr) (netip.Addr, error) {
	dst = dst.Unmap()
	src, ok := kernelSource(dst)
	if !ok {
		return netip.Addr{}, fmt.Errorf("source address toward %s: no route", dst)
	}
	if !v.has(src) {
		return src, nil
	}
	return v.Override(dst)
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

// Forwarding reports whether the kernel forwards packets of dst's family
// that arrive on ifname. The XDP program routes tunnelled packets with
// bpf_fib_lookup, which answers only for an interface that forwards: the
// same switch a router needs.
func Forwarding(ifname string, dst netip.Addr) (bool, error) {
	fam := "ipv4"
	if dst.Unmap().Is6() {
		fam = "ipv6"
	}
	b, err := os.ReadFile("/proc/sys/net/" + fam + "/conf/" + ifname + "/forwarding")
	if err != nil {
		return false, fmt.Errorf("forwarding on %s: %w", ifname, err)
	}
	return strings.TrimSpace(string(b)) != "0", nil
}

// NextHop returns the neighbour packets toward dst leave for, by the
// kernel's routes: the route's gateway, or dst itself on a connected
// network. The program's FIB lookup for a tunnel forwards only once the
// kernel has a link-layer address for it, which nothing else may have
// asked for.
func NextHop(dst netip.Addr) (netip.Addr, error) {
	dst = dst.Unmap()
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, fmt.Errorf("next hop toward %s: no route: %v", dst, err)
	}
	if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok && !gw.IsUnspecified() {
		return gw.Unmap(), nil
	}
	return dst, nil
}

// NextHops returns the distinct next hops toward dsts (see NextHop),
// sorted; a destination without a route has none.
func NextHops(dsts []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, d := range dsts {
		if nh, err := NextHop(d); err == nil {
			out = append(out, nh)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// Tunnels returns the outer source toward each of the tunnel servers dsts
// that can be served now: one with a route whose next hop resolved
// reports as known (the program's FIB lookup forwards only then). A
// server left out, and an interface ifname that does not forward a
// family (the FIB then routes none of it; read once a family), is
// reported in errs.
func (v *Picker) Tunnels(ifname string, dsts []netip.Addr, resolved func(netip.Addr) bool) (map[netip.Addr]netip.Addr, []error) {
	out := make(map[netip.Addr]netip.Addr, len(dsts))
	var errs []error
	checked := map[bool]bool{} // families whose forwarding was read
	for _, a := range dsts {
		src, err := v.Source(a)
		if err == nil {
			var nh netip.Addr
			if nh, err = NextHop(a); err == nil && !resolved(nh) {
				err = fmt.Errorf("next hop %s not resolved yet", nh)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tunnel real server %s: %w", a, err))
			continue
		}
		if fam := a.Unmap().Is4(); !checked[fam] {
			checked[fam] = true
			if on, err := Forwarding(ifname, a); err == nil && !on {
				ipv := map[bool]int{true: 4, false: 6}[fam]
				errs = append(errs, fmt.Errorf("tunnel real servers: IPv%d forwarding is off on %s: their packets pass to the kernel until it is on", ipv, ifname))
			}
		}
		out[a] = src
	}
	return out, errs
}
