package vrrp

import (
	"net/netip"
	"time"
)

// Clock is the time source of the state machine; tests inject a fake one
// so every timer fires when the test says.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

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
