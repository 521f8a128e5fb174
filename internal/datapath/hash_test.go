package datapath

import (
	"encoding/binary"
	"math/bits"
)

// The Go twin of the program's Maglev hash (bpf/jhash.h, xlb_flow_hash in
// bpf/lb.c). Only tests need it, to predict the backend of a flow: in
// production the program alone picks.

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
		_, _, c = jhashFinal(a, b, c)
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

// words is the flow key as the program's hash reads it: ten 32-bit words
// of the struct in memory, on a little-endian machine.
func (k lbFlowKey) words() [10]uint32 {
	var b [40]byte
	copy(b[0:16], k.Src[:])
	copy(b[16:32], k.Dst[:])
	binary.LittleEndian.PutUint16(b[32:], k.Sport)
	binary.LittleEndian.PutUint16(b[34:], k.Dport)
	b[36], b[37] = k.Proto, k.Family
	var w [10]uint32
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

// FlowHash is the Maglev hash the program computes for f: over the whole
// tuple, or over the source address alone when hashSource is set.
func FlowHash(f Flow, hashSource bool) uint32 {
	w := f.bpf6().words()
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
