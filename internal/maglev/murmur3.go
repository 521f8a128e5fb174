package maglev

import "math/bits"

// murmur3 is MurmurHash3_x64_128 (Austin Appleby, public domain), the hash
// Katran and Cilium derive Maglev permutations from. It is written here over
// a string so that hashing a key neither allocates nor needs a dependency.
// Its two 64-bit halves are independent enough to serve as the two hashes
// the Maglev paper asks for (offset and skip).
func murmur3(s string, seed uint32) (h1, h2 uint64) {
	const (
		c1 = 0x87c37b91114253d5
		c2 = 0x4cf5ad432745937f
	)
	h1, h2 = uint64(seed), uint64(seed)
	n := len(s)
	for ; len(s) >= 16; s = s[16:] {
		k1, k2 := le64(s), le64(s[8:])

		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729

		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}

	// Tail: up to 15 bytes, little-endian, first eight into k1.
	var k1, k2 uint64
	for i := len(s) - 1; i >= 8; i-- {
		k2 = k2<<8 | uint64(s[i])
	}
	for i := min(len(s), 8) - 1; i >= 0; i-- {
		k1 = k1<<8 | uint64(s[i])
	}
	if len(s) > 8 {
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
	}
	if len(s) > 0 {
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
	}

	h1 ^= uint64(n)
	h2 ^= uint64(n)
	h1 += h2
	h2 += h1
	h1 = fmix64(h1)
	h2 = fmix64(h2)
	h1 += h2
	h2 += h1
	return h1, h2
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

func le64(s string) uint64 {
	_ = s[7] // one bounds check instead of eight
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
