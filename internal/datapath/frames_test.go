package datapath

import (
	"encoding/binary"
	"net/netip"
)

// This file builds the frames the data path tests feed to the program. It
// is deliberately small and self-contained: each header is written field by
// field with encoding/binary, so a test reads as the wire format it means.

type macAddr = [6]byte

// EtherTypes, TPIDs and IP protocol numbers the tests use.
const (
	etIPv4    = 0x0800
	etARP     = 0x0806
	etIPv6    = 0x86dd
	etLLDP    = 0x88cc
	tpid8021Q = 0x8100
	tpidQinQ  = 0x88a8

	ipProtoHopOpts  = 0
	ipProtoICMP     = 1
	ipProtoTCP      = 6
	ipProtoUDP      = 17
	ipProtoRouting  = 43
	ipProtoFragment = 44
	ipProtoICMPv6   = 58
	ipProtoDstOpts  = 60
	ipProtoVRRP     = 112

	thFIN = 0x01
	thSYN = 0x02
	thRST = 0x04
	thPSH = 0x08
	thACK = 0x10

	ipDF = 0x4000
	ipMF = 0x2000
)

// vlanTag is one 802.1Q/802.1ad tag.
type vlanTag struct {
	tpid, tci uint16
}

// pkt describes a frame: Ethernet (with optional tags), IPv4 or IPv6 (by
// the family of dstIP), and an L4 header for TCP, UDP, ICMP and ICMPv6;
// for any other protocol payload is the whole IP payload.
type pkt struct {
	dst, src     macAddr
	tags         []vlanTag
	srcIP, dstIP netip.Addr
	proto        uint8
	sport, dport uint16
	flags        uint8  // TCP flags
	frag         uint16 // IPv4 flags and fragment offset, host order
	ipOpts       []byte // IPv4 options, a multiple of 4 bytes
	payload      []byte
	pad          int  // Ethernet padding after the IP packet
	zeroCsum     bool // UDP over IPv4 without a checksum
}

// layout is where a built frame's headers end.
type layout struct {
	eth   int // Ethernet header and tags
	ip    int // fixed IPv4/IPv6 header
	opts  int // IPv4 options (== ip without options, and for IPv6)
	l4    int // TCP/UDP/ICMP header
	ipEnd int // end of the IP packet, where padding starts
}

func (p pkt) build() []byte {
	b, _ := p.buildLayout()
	return b
}

func (p pkt) buildLayout() ([]byte, layout) {
	var lo layout
	b := append([]byte{}, p.dst[:]...)
	b = append(b, p.src[:]...)
	for _, tag := range p.tags {
		b = binary.BigEndian.AppendUint16(b, tag.tpid)
		b = binary.BigEndian.AppendUint16(b, tag.tci)
	}
	v4 := p.dstIP.Is4()
	if v4 {
		b = binary.BigEndian.AppendUint16(b, etIPv4)
	} else {
		b = binary.BigEndian.AppendUint16(b, etIPv6)
	}
	lo.eth = len(b)

	l4 := p.l4()
	if v4 {
		hdr := ipv4Header(p.srcIP, p.dstIP, p.proto, p.frag, p.ipOpts, len(l4))
		b = append(b, hdr...)
		lo.ip = lo.eth + 20
		lo.opts = lo.eth + len(hdr)
	} else {
		b = append(b, ipv6Header(p.srcIP, p.dstIP, p.proto, len(l4))...)
		lo.ip = lo.eth + 40
		lo.opts = lo.ip
	}
	b = append(b, l4...)
	lo.l4 = lo.opts + len(l4) - len(p.payload)
	if p.proto != ipProtoTCP && p.proto != ipProtoUDP && p.proto != ipProtoICMP && p.proto != ipProtoICMPv6 {
		lo.l4 = lo.opts
	}
	lo.ipEnd = len(b)
	b = append(b, make([]byte, p.pad)...)
	return b, lo
}

// l4 is the IP payload: a transport header with checksum, then payload.
func (p pkt) l4() []byte {
	switch p.proto {
	case ipProtoTCP:
		h := make([]byte, 20, 20+len(p.payload))
		binary.BigEndian.PutUint16(h[0:], p.sport)
		binary.BigEndian.PutUint16(h[2:], p.dport)
		binary.BigEndian.PutUint32(h[4:], 0x01020304) // seq
		if p.flags&thACK != 0 {
			binary.BigEndian.PutUint32(h[8:], 0x0a0b0c0d)
		}
		h[12] = 5 << 4
		h[13] = p.flags
		binary.BigEndian.PutUint16(h[14:], 64240)
		h = append(h, p.payload...)
		binary.BigEndian.PutUint16(h[16:], l4Checksum(p.srcIP, p.dstIP, ipProtoTCP, h))
		return h
	case ipProtoUDP:
		h := make([]byte, 8, 8+len(p.payload))
		binary.BigEndian.PutUint16(h[0:], p.sport)
		binary.BigEndian.PutUint16(h[2:], p.dport)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(p.payload)))
		h = append(h, p.payload...)
		if !p.zeroCsum {
			binary.BigEndian.PutUint16(h[6:], l4Checksum(p.srcIP, p.dstIP, ipProtoUDP, h))
		}
		return h
	case ipProtoICMP, ipProtoICMPv6:
		// Echo request, id and sequence from the ports.
		h := make([]byte, 8, 8+len(p.payload))
		h[0] = 8
		if p.proto == ipProtoICMPv6 {
			h[0] = 128
		}
		binary.BigEndian.PutUint16(h[4:], p.sport)
		binary.BigEndian.PutUint16(h[6:], p.dport)
		h = append(h, p.payload...)
		if p.proto == ipProtoICMPv6 {
			binary.BigEndian.PutUint16(h[2:], l4Checksum(p.srcIP, p.dstIP, ipProtoICMPv6, h))
		} else {
			binary.BigEndian.PutUint16(h[2:], checksum(h))
		}
		return h
	}
	return append([]byte{}, p.payload...)
}

// flow is the tuple the program keys p by.
func (p pkt) flow() Flow {
	return Flow{Src: p.srcIP, Dst: p.dstIP, SrcPort: p.sport, DstPort: p.dport, Proto: p.proto}
}

// with returns a copy of p changed by fn, so cases can share a base.
func (p pkt) with(fn func(*pkt)) pkt {
	p.tags = append([]vlanTag(nil), p.tags...)
	fn(&p)
	return p
}

// forwarded is the frame the program should send for p: the same bytes
// with new Ethernet addresses.
func (p pkt) forwarded(src, dst macAddr) []byte {
	return p.with(func(q *pkt) { q.src, q.dst = src, dst }).build()
}

func ipv4Header(src, dst netip.Addr, proto uint8, frag uint16, opts []byte, l4len int) []byte {
	if len(opts)%4 != 0 {
		panic("IPv4 options must be a multiple of 4 bytes")
	}
	h := make([]byte, 20+len(opts))
	h[0] = 4<<4 | byte(len(h)/4)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+l4len))
	binary.BigEndian.PutUint16(h[4:], 0x1234) // id
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	copy(h[20:], opts)
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return h
}

func ipv6Header(src, dst netip.Addr, next uint8, plen int) []byte {
	h := make([]byte, 40)
	binary.BigEndian.PutUint32(h[0:], 6<<28|0x12345) // flow label
	binary.BigEndian.PutUint16(h[4:], uint16(plen))
	h[6] = next
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return h
}

// checksum is the Internet checksum (RFC 1071) of the concatenated parts.
func checksum(parts ...[]byte) uint16 {
	var sum uint32
	var odd []byte
	for _, p := range parts {
		b := append(odd, p...)
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		odd = append([]byte{}, b...)
	}
	if len(odd) == 1 {
		sum += uint32(odd[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func l4Checksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	var pseudo []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		pseudo = append(append(pseudo, s[:]...), d[:]...)
		pseudo = append(pseudo, 0, proto)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(seg)))
	} else {
		s, d := src.As16(), dst.As16()
		pseudo = append(append(pseudo, s[:]...), d[:]...)
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(seg)))
		pseudo = append(pseudo, 0, 0, 0, proto)
	}
	c := checksum(pseudo, seg)
	if c == 0 && proto == ipProtoUDP {
		c = 0xffff
	}
	return c
}

// arpRequest is an Ethernet ARP who-has for target from sender.
func arpRequest(src macAddr, sender, target netip.Addr, tags ...vlanTag) []byte {
	b := append([]byte{}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, src[:]...)
	for _, tag := range tags {
		b = binary.BigEndian.AppendUint16(b, tag.tpid)
		b = binary.BigEndian.AppendUint16(b, tag.tci)
	}
	b = binary.BigEndian.AppendUint16(b, etARP)
	b = binary.BigEndian.AppendUint16(b, 1)      // Ethernet
	b = binary.BigEndian.AppendUint16(b, etIPv4) // IPv4
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, 1) // request
	s, t := sender.As4(), target.As4()
	b = append(b, src[:]...)
	b = append(b, s[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, t[:]...)
	return b
}

// rawEther is an Ethernet frame of any EtherType.
func rawEther(dst, src macAddr, etype uint16, payload []byte) []byte {
	b := append(append([]byte{}, dst[:]...), src[:]...)
	b = binary.BigEndian.AppendUint16(b, etype)
	return append(b, payload...)
}

// ipv6Ext is an IPv6 extension header of 8 bytes leading to next; a
// fragment header when kind is ipProtoFragment.
func ipv6Ext(next uint8) []byte {
	return []byte{next, 0, 0, 0, 0, 0, 0, 0}
}
