package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// IP protocol numbers Frame knows how to build a header for.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// TCP header flags.
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
)

// EtherType values.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeVLAN uint16 = 0x8100
	EtherTypeIPv6 uint16 = 0x86dd
)

const (
	ethHeaderLen  = 14
	vlanTagLen    = 4
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	tcpHeaderLen  = 20
	udpHeaderLen  = 8
	icmpHeaderLen = 8
	maxIPv4Opts   = 40
	ipv4FlagDF    = 0x4000
	ipv4FlagMF    = 0x2000
	ipv4OffsetMsk = 0x1fff
	optNOP        = 1
)

// Frame describes an Ethernet frame carrying IPv4 or IPv6. Bytes builds it
// with lengths and checksums filled in; ParseFrame reads one back and
// verifies them. The zero values of optional fields give a plain untagged
// packet.
type Frame struct {
	SrcMAC, DstMAC net.HardwareAddr // nil is 00:00:00:00:00:00
	VLAN           uint16           // 802.1Q VLAN id; 0 for no tag

	// Src and Dst pick the IP version; both must be of the same one.
	Src, Dst netip.Addr
	Proto    uint8 // IP protocol / IPv6 next header
	TTL      uint8 // TTL or hop limit; 0 builds 64
	TOS      uint8 // IPv4 TOS or IPv6 traffic class

	// IPv4 only.
	ID             uint16
	DontFragment   bool
	MoreFragments  bool
	FragOffset     uint16 // in 8-byte units; non-zero means no L4 header
	IPv4OptionsLen int    // bytes of NOP options, a multiple of 4 up to 40

	// TCP and UDP.
	SrcPort, DstPort uint16
	// TCP only.
	TCPFlags uint8
	Seq, Ack uint32
	Window   uint16

	// ICMP and ICMPv6. ICMPRest is the header's second word (echo id and
	// sequence, the next-hop MTU of "fragmentation needed", the MTU of
	// "packet too big").
	ICMPType, ICMPCode uint8
	ICMPRest           uint32

	// Payload follows the L4 header, or the IP header for other protocols
	// and non-first fragments.
	Payload []byte
}

// Bytes returns the frame on the wire. It panics on a description that
// cannot be built (mixed address families, bad options length), which is a
// bug in the test.
func (f Frame) Bytes() []byte {
	ip := f.IP()
	b := make([]byte, 0, ethHeaderLen+vlanTagLen+len(ip))
	b = append(b, macOrZero(f.DstMAC)...)
	b = append(b, macOrZero(f.SrcMAC)...)
	if f.VLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, f.VLAN&0x0fff)
	}
	et := EtherTypeIPv4
	if f.Src.Is6() {
		et = EtherTypeIPv6
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, ip...)
}

// IP returns the IP packet without the Ethernet header, e.g. to quote it in
// an ICMP error.
func (f Frame) IP() []byte {
	if !f.Src.IsValid() || !f.Dst.IsValid() || f.Src.Is4() != f.Dst.Is4() || f.Src.Is4In6() || f.Dst.Is4In6() {
		panic(fmt.Sprintf("testutil.Frame: addresses %v and %v are not one IP version", f.Src, f.Dst))
	}
	l4 := f.l4()
	if f.Src.Is4() {
		return f.ipv4(l4)
	}
	return f.ipv6(l4)
}

func (f Frame) ttl() uint8 {
	if f.TTL == 0 {
		return 64
	}
	return f.TTL
}

// l4 returns the L4 header and payload with a zero checksum; the IP builder
// fills it in once the pseudo-header is known.
func (f Frame) l4() []byte {
	if f.Src.Is4() && f.FragOffset != 0 {
		return append([]byte(nil), f.Payload...)
	}
	var h []byte
	switch f.Proto {
	case ProtoTCP:
		h = make([]byte, tcpHeaderLen, tcpHeaderLen+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SrcPort)
		binary.BigEndian.PutUint16(h[2:], f.DstPort)
		binary.BigEndian.PutUint32(h[4:], f.Seq)
		binary.BigEndian.PutUint32(h[8:], f.Ack)
		h[12] = tcpHeaderLen / 4 << 4
		h[13] = f.TCPFlags
		binary.BigEndian.PutUint16(h[14:], f.Window)
	case ProtoUDP:
		h = make([]byte, udpHeaderLen, udpHeaderLen+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SrcPort)
		binary.BigEndian.PutUint16(h[2:], f.DstPort)
		binary.BigEndian.PutUint16(h[4:], uint16(udpHeaderLen+len(f.Payload)))
	case ProtoICMP, ProtoICMPv6:
		h = make([]byte, icmpHeaderLen, icmpHeaderLen+len(f.Payload))
		h[0], h[1] = f.ICMPType, f.ICMPCode
		binary.BigEndian.PutUint32(h[4:], f.ICMPRest)
	}
	return append(h, f.Payload...)
}

// l4ChecksumOffset returns where the L4 checksum sits, or -1 if the
// protocol has none Frame builds.
func l4ChecksumOffset(proto uint8, v6 bool) int {
	switch {
	case proto == ProtoTCP:
		return 16
	case proto == ProtoUDP:
		return 6
	case proto == ProtoICMP && !v6, proto == ProtoICMPv6 && v6:
		return 2
	}
	return -1
}

func (f Frame) ipv4(l4 []byte) []byte {
	if f.IPv4OptionsLen < 0 || f.IPv4OptionsLen > maxIPv4Opts || f.IPv4OptionsLen%4 != 0 {
		panic(fmt.Sprintf("testutil.Frame: IPv4OptionsLen %d is not a multiple of 4 in 0..40", f.IPv4OptionsLen))
	}
	hl := ipv4HeaderLen + f.IPv4OptionsLen
	b := make([]byte, hl, hl+len(l4))
	b[0] = 4<<4 | byte(hl/4)
	b[1] = f.TOS
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(l4)))
	binary.BigEndian.PutUint16(b[4:], f.ID)
	frag := f.FragOffset & ipv4OffsetMsk
	if f.DontFragment {
		frag |= ipv4FlagDF
	}
	if f.MoreFragments {
		frag |= ipv4FlagMF
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = f.ttl()
	b[9] = f.Proto
	src, dst := f.Src.As4(), f.Dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	for i := ipv4HeaderLen; i < hl; i++ {
		b[i] = optNOP
	}
	binary.BigEndian.PutUint16(b[10:], Checksum(b))

	if off := l4ChecksumOffset(f.Proto, false); off >= 0 && f.FragOffset == 0 && len(l4) >= off+2 {
		var sum uint32
		if f.Proto != ProtoICMP { // ICMPv4 has no pseudo-header
			sum = pseudoHeaderSum(src[:], dst[:], f.Proto, len(l4))
		}
		putL4Checksum(l4, off, f.Proto, sum)
	}
	return append(b, l4...)
}

func (f Frame) ipv6(l4 []byte) []byte {
	b := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(l4))
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(f.TOS)<<20)
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	b[6] = f.Proto
	b[7] = f.ttl()
	src, dst := f.Src.As16(), f.Dst.As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	if off := l4ChecksumOffset(f.Proto, true); off >= 0 && len(l4) >= off+2 {
		putL4Checksum(l4, off, f.Proto, pseudoHeaderSum(src[:], dst[:], f.Proto, len(l4)))
	}
	return append(b, l4...)
}

func putL4Checksum(l4 []byte, off int, proto uint8, pseudo uint32) {
	c := fold(sum16(l4, pseudo))
	// A zero UDP checksum means "none"; the computed zero is sent as ones.
	if proto == ProtoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// Checksum returns the Internet checksum (RFC 1071) of b: the ones'
// complement of the ones' complement sum of its 16-bit words.
func Checksum(b []byte) uint16 { return fold(sum16(b, 0)) }

func sum16(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudoHeaderSum sums the fields of the TCP/UDP pseudo-header; for IPv4
// and IPv6 they add up the same way once the lengths are words.
func pseudoHeaderSum(src, dst []byte, proto uint8, l4Len int) uint32 {
	sum := sum16(src, 0)
	sum = sum16(dst, sum)
	return sum + uint32(proto) + uint32(l4Len>>16) + uint32(l4Len&0xffff)
}

func macOrZero(m net.HardwareAddr) net.HardwareAddr {
	if m == nil {
		return make(net.HardwareAddr, 6)
	}
	if len(m) != 6 {
		panic(fmt.Sprintf("testutil.Frame: MAC %v is not 6 bytes", m))
	}
	return m
}

// ParseFrame reads a frame Bytes could have built and checks its lengths and
// checksums, so a test can compare what a data path emitted against the
// Frame it expects (cmp.Diff) and be told when a rewrite broke a checksum.
// IPv4 options are reported by length only.
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	if len(b) < ethHeaderLen {
		return f, fmt.Errorf("frame of %d bytes is shorter than an Ethernet header", len(b))
	}
	f.DstMAC = net.HardwareAddr(append([]byte(nil), b[0:6]...))
	f.SrcMAC = net.HardwareAddr(append([]byte(nil), b[6:12]...))
	et := binary.BigEndian.Uint16(b[12:])
	b = b[ethHeaderLen:]
	if et == EtherTypeVLAN {
		if len(b) < vlanTagLen {
			return f, errors.New("802.1Q tag truncated")
		}
		f.VLAN = binary.BigEndian.Uint16(b) & 0x0fff
		et = binary.BigEndian.Uint16(b[2:])
		b = b[vlanTagLen:]
	}
	var l4 []byte
	var pseudo uint32
	switch et {
	case EtherTypeIPv4:
		if len(b) < ipv4HeaderLen || b[0]>>4 != 4 {
			return f, errors.New("ipv4 header truncated or wrong version")
		}
		hl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if hl < ipv4HeaderLen || total < hl || total > len(b) {
			return f, fmt.Errorf("ipv4 header length %d, total length %d, %d bytes present", hl, total, len(b))
		}
		if c := Checksum(b[:hl]); c != 0 {
			return f, fmt.Errorf("ipv4 header checksum 0x%04x is wrong (sum over the header gives 0x%04x, want 0)", binary.BigEndian.Uint16(b[10:]), c)
		}
		f.TOS, f.ID, f.TTL, f.Proto = b[1], binary.BigEndian.Uint16(b[4:]), b[8], b[9]
		frag := binary.BigEndian.Uint16(b[6:])
		f.DontFragment, f.MoreFragments = frag&ipv4FlagDF != 0, frag&ipv4FlagMF != 0
		f.FragOffset = frag & ipv4OffsetMsk
		f.IPv4OptionsLen = hl - ipv4HeaderLen
		f.Src = netip.AddrFrom4([4]byte(b[12:16]))
		f.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[hl:total]
		if f.FragOffset != 0 {
			f.Payload = append([]byte(nil), l4...)
			return f, nil
		}
		if f.Proto != ProtoICMP {
			pseudo = pseudoHeaderSum(b[12:16], b[16:20], f.Proto, len(l4))
		}
	case EtherTypeIPv6:
		if len(b) < ipv6HeaderLen || b[0]>>4 != 6 {
			return f, errors.New("ipv6 header truncated or wrong version")
		}
		plen := int(binary.BigEndian.Uint16(b[4:]))
		if ipv6HeaderLen+plen > len(b) {
			return f, fmt.Errorf("ipv6 payload length %d, %d bytes present", plen, len(b)-ipv6HeaderLen)
		}
		f.TOS = uint8(binary.BigEndian.Uint32(b) >> 20)
		f.Proto, f.TTL = b[6], b[7]
		f.Src = netip.AddrFrom16([16]byte(b[8:24]))
		f.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[ipv6HeaderLen : ipv6HeaderLen+plen]
		pseudo = pseudoHeaderSum(b[8:24], b[24:40], f.Proto, len(l4))
	default:
		return f, fmt.Errorf("ethertype 0x%04x is neither IPv4 nor IPv6", et)
	}
	return f, f.parseL4(l4, pseudo, et == EtherTypeIPv6)
}

func (f *Frame) parseL4(l4 []byte, pseudo uint32, v6 bool) error {
	var hl int
	switch f.Proto {
	case ProtoTCP:
		if len(l4) < tcpHeaderLen {
			return fmt.Errorf("tcp header truncated: %d bytes", len(l4))
		}
		hl = int(l4[12]>>4) * 4
		if hl != tcpHeaderLen {
			return fmt.Errorf("tcp header of %d bytes: options are not supported", hl)
		}
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		f.Seq, f.Ack = binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:])
		f.TCPFlags, f.Window = l4[13], binary.BigEndian.Uint16(l4[14:])
	case ProtoUDP:
		if len(l4) < udpHeaderLen {
			return fmt.Errorf("udp header truncated: %d bytes", len(l4))
		}
		if n := int(binary.BigEndian.Uint16(l4[4:])); n != len(l4) {
			return fmt.Errorf("udp length %d, %d bytes present", n, len(l4))
		}
		hl = udpHeaderLen
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case ProtoICMP, ProtoICMPv6:
		if len(l4) < icmpHeaderLen {
			return fmt.Errorf("icmp header truncated: %d bytes", len(l4))
		}
		hl = icmpHeaderLen
		f.ICMPType, f.ICMPCode, f.ICMPRest = l4[0], l4[1], binary.BigEndian.Uint32(l4[4:])
	}
	f.Payload = append([]byte(nil), l4[hl:]...)
	if l4ChecksumOffset(f.Proto, v6) < 0 {
		return nil
	}
	if f.Proto == ProtoUDP && !v6 && binary.BigEndian.Uint16(l4[6:]) == 0 {
		return nil // no checksum, allowed for UDP over IPv4
	}
	if c := fold(sum16(l4, pseudo)); c != 0 {
		return fmt.Errorf("ip protocol %d checksum 0x%04x is wrong (sum gives 0x%04x, want 0)", f.Proto, binary.BigEndian.Uint16(l4[l4ChecksumOffset(f.Proto, v6):]), c)
	}
	return nil
}
