package service

import (
	"fmt"
	"strconv"
)

// Method is how the balancer hands a real server its packets (keepalived's
// lvs_method, ipvsadm's -g and -i). Both leave the IP packet as the client
// sent it, so the real server answers the client directly; they differ in
// how far the server may be.
type Method uint8

// Forwarding methods. The zero value is direct routing, keepalived's
// default.
const (
	// Route (DR, ipvsadm -g) rewrites only the destination MAC: the real
	// server must be on the balancer's segment.
	Route Method = iota
	// Tunnel (TUN, ipvsadm -i) wraps the packet in an outer IP header to
	// the real server's address, which may be any number of hops away.
	Tunnel
)

// String returns ipvsadm's name for the method: "Route" or "Tunnel".
func (m Method) String() string {
	switch m {
	case Route:
		return "Route"
	case Tunnel:
		return "Tunnel"
	}
	return "method(" + strconv.Itoa(int(m)) + ")"
}

// Encap is the outer header of a tunnelled packet (keepalived's
// "type" after lvs_method TUN).
type Encap uint8

// Encapsulations. The zero value is IPIP, keepalived's default.
const (
	// IPIP is IP in IP of the same family: IPv4 in IPv4 (protocol 4),
	// IPv6 in IPv6 (protocol 41). The real server decapsulates it with
	// an ipip (ip6tnl) device.
	IPIP Encap = iota
	// GUE is Generic UDP Encapsulation: outer IP, UDP to Forward.Port, a
	// 4-byte GUE header, the packet. The UDP source port comes from the
	// flow hash, so the real server's NIC spreads flows over its queues;
	// the real server decapsulates with a fou port of type gue.
	GUE
)

// String returns keepalived's name: "ipip" or "gue".
func (e Encap) String() string {
	switch e {
	case IPIP:
		return "ipip"
	case GUE:
		return "gue"
	}
	return "encap(" + strconv.Itoa(int(e)) + ")"
}

// Forward is how one real server (or sorry server) is reached. The zero
// value is direct routing.
type Forward struct {
	Method Method
	// Encap, Port and Csum matter only for Tunnel.
	Encap Encap
	// Port is GUE's UDP destination port; 0 for IPIP.
	Port uint16
	// Csum fills the outer UDP checksum of GUE (keepalived's csum);
	// false sends zero, which UDP allows over IPv4 and the kernel's fou
	// accepts over IPv6 too (keepalived's nocsum, the default).
	Csum bool
}

// String describes the method as keepalived writes it: "DR", "TUN ipip",
// "TUN gue port 6080 csum".
func (f Forward) String() string {
	if f.Method != Tunnel {
		return "DR"
	}
	s := "TUN " + f.Encap.String()
	if f.Encap == GUE {
		s += " port " + strconv.Itoa(int(f.Port))
		if f.Csum {
			s += " csum"
		}
	}
	return s
}

// Validate reports a tunnel that cannot be built: GUE needs a port, IPIP
// takes none and has no checksum.
func (f Forward) Validate() error {
	switch {
	case f.Method != Route && f.Method != Tunnel:
		return fmt.Errorf("unknown forwarding method %d", f.Method)
	case f.Method == Route && f != Forward{}:
		return fmt.Errorf("direct routing takes no tunnel settings")
	case f.Method == Tunnel && f.Encap == GUE && f.Port == 0:
		return fmt.Errorf("gue tunnel needs a port")
	case f.Method == Tunnel && f.Encap == IPIP && (f.Port != 0 || f.Csum):
		return fmt.Errorf("ipip tunnel takes no port or checksum")
	case f.Encap != IPIP && f.Encap != GUE:
		return fmt.Errorf("unknown tunnel type %d", f.Encap)
	}
	return nil
}

// MarshalText writes the method as ipvsadm names it, so that the model's
// JSON reads "Route" or "Tunnel" rather than a number.
func (m Method) MarshalText() ([]byte, error) {
	if m != Route && m != Tunnel {
		return nil, fmt.Errorf("unknown forwarding method %d", m)
	}
	return []byte(m.String()), nil
}

// UnmarshalText reads what MarshalText writes.
func (m *Method) UnmarshalText(b []byte) error {
	switch string(b) {
	case "Route":
		*m = Route
	case "Tunnel":
		*m = Tunnel
	default:
		return fmt.Errorf("%q is not a forwarding method (Route or Tunnel)", b)
	}
	return nil
}

// MarshalText writes keepalived's name of the encapsulation.
func (e Encap) MarshalText() ([]byte, error) {
	if e != IPIP && e != GUE {
		return nil, fmt.Errorf("unknown tunnel type %d", e)
	}
	return []byte(e.String()), nil
}

// UnmarshalText reads what MarshalText writes.
func (e *Encap) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ipip":
		*e = IPIP
	case "gue":
		*e = GUE
	default:
		return fmt.Errorf("%q is not a tunnel type (ipip or gue)", b)
	}
	return nil
}

// Outer header sizes. GUE's 4 bytes are its base header without optional
// fields, which is all the kernel's fou (and IPVS) put on the wire.
const (
	ipv4Header = 20
	ipv6Header = 40
	udpHeader  = 8
	gueHeader  = 4
)

// Overhead is the number of bytes the forwarding method adds to every
// packet to a server of the given family (ipv6 true for IPv6): what the
// path MTU to that server loses. Direct routing adds nothing.
func (f Forward) Overhead(ipv6 bool) int {
	if f.Method != Tunnel {
		return 0
	}
	n := ipv4Header
	if ipv6 {
		n = ipv6Header
	}
	if f.Encap == GUE {
		n += udpHeader + gueHeader
	}
	return n
}
