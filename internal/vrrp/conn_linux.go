package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ConnConfig says where a RawConn sends and listens.
type ConnConfig struct {
	Interface string
	// IPv6 selects VRRP over IPv6 (v3 only).
	IPv6 bool
	// Source is the advertisement source; invalid means the interface's
	// first IPv4 address, or its link-local IPv6 address (RFC 5798
	// §5.1.2.1 requires link-local), as keepalived picks them.
	Source netip.Addr
	// Unicast skips joining the multicast group (unicast_peer).
	Unicast bool
}

// RawConn is a Conn over a raw IP socket (protocol 112) bound to one
// interface. It is created in the calling thread's network namespace.
type RawConn struct {
	ifi  *net.Interface
	src  netip.Addr
	p4   *ipv4.PacketConn
	p6   *ipv6.PacketConn
	conn net.PacketConn
}

// Listen opens a raw VRRP socket on cfg.Interface with TTL/hop limit 255
// for sending and TTL/hop-limit reporting for receiving.
func Listen(cfg ConnConfig) (*RawConn, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vrrp: interface %s: %w", cfg.Interface, err)
	}
	src := cfg.Source
	if !src.IsValid() {
		if src, err = interfaceSource(ifi, cfg.IPv6); err != nil {
			return nil, err
		}
	}
	if src.Is6() != cfg.IPv6 {
		return nil, fmt.Errorf("vrrp: interface %s: source %s is not of the instance's family", ifi.Name, src)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			// Only this interface's packets: instances on other links may
			// use the same VRID.
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
		}); err != nil {
			return err
		}
		return serr
	}}
	rc := &RawConn{ifi: ifi, src: src}
	fail := func(what string, err error) (*RawConn, error) {
		if rc.conn != nil {
			rc.conn.Close()
		}
		return nil, fmt.Errorf("vrrp: interface %s: %s: %w", ifi.Name, what, err)
	}
	if !cfg.IPv6 {
		if rc.conn, err = lc.ListenPacket(context.Background(), "ip4:112", "0.0.0.0"); err != nil {
			return fail("listen", err)
		}
		p := ipv4.NewPacketConn(rc.conn)
		rc.p4 = p
		if !cfg.Unicast {
			if err := p.JoinGroup(ifi, &net.IPAddr{IP: Group4.AsSlice()}); err != nil {
				return fail("join "+Group4.String(), err)
			}
		}
		for _, step := range []struct {
			what string
			err  error
		}{
			{"multicast interface", p.SetMulticastInterface(ifi)},
			{"multicast ttl", p.SetMulticastTTL(255)},
			{"ttl", p.SetTTL(255)},
			{"multicast loopback", p.SetMulticastLoopback(false)},
			// keepalived marks advertisements as internetwork control.
			{"tos", p.SetTOS(0xc0)},
			{"control messages", p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true)},
		} {
			if step.err != nil {
				return fail(step.what, step.err)
			}
		}
		return rc, nil
	}
	if rc.conn, err = lc.ListenPacket(context.Background(), "ip6:112", "::"); err != nil {
		return fail("listen", err)
	}
	p := ipv6.NewPacketConn(rc.conn)
	rc.p6 = p
	if !cfg.Unicast {
		if err := p.JoinGroup(ifi, &net.IPAddr{IP: Group6.AsSlice()}); err != nil {
			return fail("join "+Group6.String(), err)
		}
	}
	for _, step := range []struct {
		what string
		err  error
	}{
		{"multicast interface", p.SetMulticastInterface(ifi)},
		{"multicast hop limit", p.SetMulticastHopLimit(255)},
		{"hop limit", p.SetHopLimit(255)},
		{"multicast loopback", p.SetMulticastLoopback(false)},
		{"traffic class", p.SetTrafficClass(0xc0)},
		{"control messages", p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)},
	} {
		if step.err != nil {
			return fail(step.what, step.err)
		}
	}
	return rc, nil
}

func interfaceSource(ifi *net.Interface, v6 bool) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrp: interface %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !v6 && ip.Is4() || v6 && ip.Is6() && ip.IsLinkLocalUnicast() {
			return ip, nil
		}
	}
	family := "IPv4"
	if v6 {
		family = "link-local IPv6"
	}
	return netip.Addr{}, fmt.Errorf("vrrp: interface %s has no %s address to send from", ifi.Name, family)
}

// ReadFrom implements Conn.
func (c *RawConn) ReadFrom(b []byte) (int, netip.Addr, netip.Addr, int, error) {
	for {
		var (
			n        int
			src      net.Addr
			dst      net.IP
			ttl, idx int
			err      error
		)
		if c.p4 != nil {
			var cm *ipv4.ControlMessage
			n, cm, src, err = c.p4.ReadFrom(b)
			if cm != nil {
				dst, ttl, idx = cm.Dst, cm.TTL, cm.IfIndex
			}
		} else {
			var cm *ipv6.ControlMessage
			n, cm, src, err = c.p6.ReadFrom(b)
			if cm != nil {
				dst, ttl, idx = cm.Dst, cm.HopLimit, cm.IfIndex
			}
		}
		if err != nil {
			return 0, netip.Addr{}, netip.Addr{}, 0, err
		}
		if idx != 0 && idx != c.ifi.Index {
			continue
		}
		ia, ok := src.(*net.IPAddr)
		if !ok {
			continue
		}
		s, ok1 := netip.AddrFromSlice(ia.IP)
		d, ok2 := netip.AddrFromSlice(dst)
		if !ok1 || !ok2 {
			continue
		}
		return n, s.Unmap(), d.Unmap(), ttl, nil
	}
}

// WriteTo implements Conn.
func (c *RawConn) WriteTo(b []byte, dst netip.Addr) error {
	var err error
	if c.p4 != nil {
		_, err = c.p4.WriteTo(b, &ipv4.ControlMessage{Src: c.src.AsSlice(), IfIndex: c.ifi.Index}, &net.IPAddr{IP: dst.AsSlice()})
	} else {
		zone := ""
		if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() {
			// By index: a name would be looked up in whatever namespace
			// the sending thread happens to be in.
			zone = strconv.Itoa(c.ifi.Index)
		}
		_, err = c.p6.WriteTo(b, &ipv6.ControlMessage{Src: c.src.AsSlice(), IfIndex: c.ifi.Index}, &net.IPAddr{IP: dst.AsSlice(), Zone: zone})
	}
	if err != nil {
		return fmt.Errorf("vrrp: interface %s: send to %s: %w", c.ifi.Name, dst, err)
	}
	return nil
}

// LocalAddr implements Conn.
func (c *RawConn) LocalAddr() netip.Addr { return c.src }

// Close implements Conn.
func (c *RawConn) Close() error {
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
