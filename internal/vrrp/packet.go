// Package vrrp speaks VRRP: version 2 (RFC 3768, keepalived's default) and
// version 3 (RFC 5798, IPv4 and IPv6), with keepalived's behaviour where the
// RFCs leave room. It owns the wire format, the Init/Backup/Master/Fault
// state machine, sync groups and the priority weights of tracked objects;
// it reports every state change, and adding the addresses, announcing
// them (package announce) and running notify scripts is the caller's job.
package vrrp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Protocol is VRRP's IP protocol number.
const Protocol = 112

// Multicast groups advertisements are sent to (RFC 5798 §5.1.1.2, §5.1.2.2).
var (
	Group4 = netip.AddrFrom4([4]byte{224, 0, 0, 18})
	Group6 = netip.MustParseAddr("ff02::12")
)

// Priorities with a meaning of their own.
const (
	// PriorityStop tells backups the master is leaving: they take over
	// after their skew time instead of the full Master_Down_Interval.
	PriorityStop = 0
	// PriorityOwner is the address owner's: it becomes master at once.
	PriorityOwner = 255
)

// AuthPass is VRRPv2's simple-text password authentication type
// (keepalived's auth_type PASS); 0 means none.
const AuthPass = 1

const (
	typeAdvertisement = 1
	headerLen         = 8
	authLen           = 8 // v2 only
	maxAdvertIntV3    = 1<<12 - 1
)

// Advertisement is one VRRP advertisement.
type Advertisement struct {
	// Version is 2 or 3.
	Version int
	VRID    uint8
	// Priority 0 means the master is stopping, 255 the address owner.
	Priority uint8
	// AdvertInt is in the version's unit: seconds for v2, centiseconds
	// for v3 (12 bits). Interval converts it.
	AdvertInt uint16
	// Addrs are the virtual addresses, all of one family.
	Addrs []netip.Addr
	// AuthType and AuthData are VRRPv2 authentication; v3 has none.
	AuthType uint8
	AuthData [8]byte
}

// Interval returns the advertisement interval as a duration.
func (a *Advertisement) Interval() time.Duration {
	if a.Version == 2 {
		return time.Duration(a.AdvertInt) * time.Second
	}
	return time.Duration(a.AdvertInt) * 10 * time.Millisecond
}

// advertUnits converts an interval to the version's wire unit, rounding
// down as keepalived does, but never to 0, which RFC 5798 forbids.
func advertUnits(version int, d time.Duration) (uint16, error) {
	unit, max := 10*time.Millisecond, time.Duration(maxAdvertIntV3)*10*time.Millisecond
	if version == 2 {
		unit, max = time.Second, 255*time.Second
	}
	if d < unit || d > max {
		return 0, fmt.Errorf("advert_int %v is outside %v..%v for VRRPv%d", d, unit, max, version)
	}
	return uint16(d / unit), nil
}

// Reason classifies why a received packet was dropped; the state machine
// counts drops by reason.
type Reason int

// Drop reasons.
const (
	ReasonTruncated Reason = iota + 1
	ReasonVersion
	ReasonType
	ReasonAddrCount
	ReasonFamily
	ReasonChecksum
	ReasonTTL
	ReasonAuth
	ReasonInterval
	ReasonAddrList
	ReasonOwnPacket
	ReasonSource
	numReasons
)

var reasonNames = [...]string{
	ReasonTruncated: "truncated",
	ReasonVersion:   "version",
	ReasonType:      "type",
	ReasonAddrCount: "address count",
	ReasonFamily:    "address family",
	ReasonChecksum:  "checksum",
	ReasonTTL:       "ttl",
	ReasonAuth:      "authentication",
	ReasonInterval:  "advert interval",
	ReasonAddrList:  "address list",
	ReasonOwnPacket: "own packet",
	ReasonSource:    "not a unicast peer",
}

func (r Reason) String() string {
	if r > 0 && r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// PacketError is an invalid advertisement; Reason says which check failed.
type PacketError struct {
	Reason Reason
	Detail string
}

func (e *PacketError) Error() string { return "invalid VRRP packet: " + e.Detail }

func invalid(r Reason, format string, args ...any) error {
	return &PacketError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Marshal encodes a as sent from src to dst; the addresses feed the v3
// checksum's pseudo-header and must be of the advertised family.
func (a *Advertisement) Marshal(src, dst netip.Addr) ([]byte, error) {
	if a.Version != 2 && a.Version != 3 {
		return nil, fmt.Errorf("vrid %d: version %d is not 2 or 3", a.VRID, a.Version)
	}
	if len(a.Addrs) == 0 || len(a.Addrs) > 255 {
		return nil, fmt.Errorf("vrid %d: %d addresses, want 1..255", a.VRID, len(a.Addrs))
	}
	v6 := a.Addrs[0].Is6()
	if a.Version == 2 && v6 {
		return nil, fmt.Errorf("vrid %d: VRRPv2 carries IPv4 addresses only", a.VRID)
	}
	if src.Is6() != v6 || dst.Is6() != v6 {
		return nil, fmt.Errorf("vrid %d: source %s and destination %s are not of the advertised family", a.VRID, src, dst)
	}
	alen := 4
	if v6 {
		alen = 16
	}
	n := headerLen + alen*len(a.Addrs)
	if a.Version == 2 {
		n += authLen
	}
	b := make([]byte, n)
	b[0] = byte(a.Version)<<4 | typeAdvertisement
	b[1] = a.VRID
	b[2] = a.Priority
	b[3] = byte(len(a.Addrs))
	if a.Version == 2 {
		if a.AdvertInt > 255 {
			return nil, fmt.Errorf("vrid %d: VRRPv2 advert interval %d s does not fit in 8 bits", a.VRID, a.AdvertInt)
		}
		b[4] = a.AuthType
		b[5] = byte(a.AdvertInt)
	} else {
		if a.AdvertInt > maxAdvertIntV3 {
			return nil, fmt.Errorf("vrid %d: VRRPv3 advert interval %d cs does not fit in 12 bits", a.VRID, a.AdvertInt)
		}
		binary.BigEndian.PutUint16(b[4:], a.AdvertInt)
	}
	off := headerLen
	for _, ip := range a.Addrs {
		if ip.Is6() != v6 || ip.Is4In6() {
			return nil, fmt.Errorf("vrid %d: address %s is not of the family of %s", a.VRID, ip, a.Addrs[0])
		}
		off += copy(b[off:], ip.AsSlice())
	}
	if a.Version == 2 {
		copy(b[off:], a.AuthData[:])
	}
	binary.BigEndian.PutUint16(b[6:], checksum(a.Version, b, src, dst))
	return b, nil
}

// Parse decodes and validates the VRRP payload b received from src to dst.
// The TTL, VRID, authentication password and address list are the state
// machine's to check against its configuration.
func Parse(b []byte, src, dst netip.Addr) (*Advertisement, error) {
	if len(b) < headerLen {
		return nil, invalid(ReasonTruncated, "%d bytes is shorter than the %d-byte header", len(b), headerLen)
	}
	a := &Advertisement{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if a.Version != 2 && a.Version != 3 {
		return nil, invalid(ReasonVersion, "version %d", a.Version)
	}
	if t := b[0] & 0xf; t != typeAdvertisement {
		return nil, invalid(ReasonType, "type %d is not an advertisement", t)
	}
	v6 := src.Is6() && !src.Is4In6()
	if a.Version == 2 && v6 {
		return nil, invalid(ReasonFamily, "VRRPv2 over IPv6")
	}
	count := int(b[3])
	if count == 0 {
		return nil, invalid(ReasonAddrCount, "no addresses")
	}
	alen := 4
	if v6 {
		alen = 16
	}
	want := headerLen + count*alen
	if a.Version == 2 {
		want += authLen
	}
	// RFC 5798 lets a v3 packet be longer than its addresses; v2 and
	// keepalived agree on the exact size, so only trailing bytes are allowed.
	if len(b) < want {
		return nil, invalid(ReasonTruncated, "%d bytes hold fewer than %d addresses", len(b), count)
	}
	if got := checksum(a.Version, b, src.Unmap(), dst.Unmap()); got != binary.BigEndian.Uint16(b[6:]) {
		return nil, invalid(ReasonChecksum, "checksum %#04x, want %#04x", binary.BigEndian.Uint16(b[6:]), got)
	}
	if a.Version == 2 {
		a.AuthType = b[4]
		a.AdvertInt = uint16(b[5])
	} else {
		a.AdvertInt = binary.BigEndian.Uint16(b[4:]) & maxAdvertIntV3
	}
	if a.AdvertInt == 0 {
		return nil, invalid(ReasonInterval, "advert interval 0")
	}
	a.Addrs = make([]netip.Addr, count)
	off := headerLen
	for i := range a.Addrs {
		if v6 {
			a.Addrs[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
		} else {
			a.Addrs[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
		}
		off += alen
	}
	if a.Version == 2 {
		copy(a.AuthData[:], b[off:off+authLen])
	}
	return a, nil
}

// checksum computes the Internet checksum of b with its checksum field
// taken as zero: over the VRRP packet alone for v2, with the IP
// pseudo-header in front for v3 (RFC 5798 §5.2.8), as keepalived does.
func checksum(version int, b []byte, src, dst netip.Addr) uint16 {
	var sum uint32
	if version == 3 {
		sum = sum16(src.AsSlice(), sum)
		sum = sum16(dst.AsSlice(), sum)
		sum += Protocol + uint32(len(b))
	}
	sum = sum16(b[:6], sum)
	sum = sum16(b[8:], sum)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func sum16(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}
