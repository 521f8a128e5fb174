package vrrp

import "net/netip"

// Conn carries advertisements for one instance. Implementations report the
// TTL (IPv4) or hop limit (IPv6) so the state machine can insist on 255
// (RFC 5798 §5.1.1.3): a packet that crossed a router is not from a peer.
type Conn interface {
	// ReadFrom reads one VRRP payload (without the IP header).
	ReadFrom(b []byte) (n int, src, dst netip.Addr, ttl int, err error)
	// WriteTo sends one VRRP payload to dst with TTL/hop limit 255.
	WriteTo(b []byte, dst netip.Addr) error
	// LocalAddr is the source of sent advertisements: the checksum covers
	// it and equal priorities are broken by it.
	LocalAddr() netip.Addr
	Close() error
}
