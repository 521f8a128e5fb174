package datapath

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// hashSeed is XLB_HASH_SEED: fixed so two balancers agree on every flow.
const hashSeed = 0x786c6232

// jhash2 is Bob Jenkins' lookup3 over 32-bit words, word for word the
// xlb_jhash2 of bpf/jhash.h.
func jhash2(k []uint32, initval uint32) uint32 {
	a := 0xdeadbeef + uint32(len(k))<<2 + initval
	b, c := a, a
	for len(k) > 3 {
		a += k[0]
		b += k[1]
		c += k[2]
		a, b, c = jhashMix(a, b, c)
		k = k[3:]
	}
	switch len(k) {
	case 3:
		c += k[2]
		fallthrough
	case 2:
		b += k[1]
		fallthrough
	case 1:
		a += k[0]
		a, b, c = jhashFinal(a, b, c)
	}
	return c
}

func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func jhashFinal(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}

// Flow is a transport 5-tuple as the data path keys it.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8 // 6 (TCP) or 17 (UDP)
}

// words lays the tuple out as the program's struct flow_key, in the
// program's view of memory: addresses and ports stay in network order,
// read as little-endian words.
func (f Flow) words() [10]uint32 {
	var w [10]uint32
	src, dst := addrWords(f.Src), addrWords(f.Dst)
	copy(w[0:4], src[:])
	copy(w[4:8], dst[:])
	var ports [4]byte
	binary.BigEndian.PutUint16(ports[0:], f.SrcPort)
	binary.BigEndian.PutUint16(ports[2:], f.DstPort)
	w[8] = binary.LittleEndian.Uint32(ports[:])
	w[9] = uint32(f.Proto) | uint32(family(f.Dst))<<8
	return w
}

// addrWords is an address as the program's __u32[4] holds it: IPv4 in
// the first word, the rest zero.
func addrWords(a netip.Addr) [4]uint32 {
	var w [4]uint32
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		w[0] = binary.LittleEndian.Uint32(b[:])
		return w
	}
	b := a.As16()
	for i := range 4 {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

func family(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return afInet
	}
	return afInet6
}

// FlowHash is the Maglev hash the program computes for f: over the whole
// tuple, or over the source address alone when hashSource is set.
func FlowHash(f Flow, hashSource bool) uint32 {
	w := f.words()
	if hashSource {
		return jhash2(w[0:4], hashSeed)
	}
	return jhash2(w[:], hashSeed)
}

// MaglevIndex maps a hash to a slot of a table of size entries exactly as
// the program does: hash * size >> 32.
func MaglevIndex(hash, size uint32) uint32 {
	return uint32(uint64(hash) * uint64(size) >> 32)
}
