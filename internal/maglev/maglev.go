// Package maglev builds weighted Maglev lookup tables (Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016).
//
// As in the paper, every backend has its own permutation of the M slots,
// (offset + k·skip) mod M, with offset and skip taken from a hash of its Key
// (MurmurHash3, as Katran and Cilium use). Two things differ, both to serve
// weights.
//
// How many slots a backend gets is decided first, exactly: the Sainte-Laguë
// (Webster) apportionment of M seats by weight, so each backend's count is
// its share M·w/W rounded, give or take the odd slot, and equal weights give
// counts that differ by at most one.
//
// Which slots it gets is a stable matching. Backend j looks at the slots in
// its permutation order, look k at time c(k)/w_j, and a slot goes to the
// backend that looked at it first among those that still had room. c(k) is
// H(M) - H(M-k-1) (harmonic numbers): a slot's look time is then close to
// exponential with rate w, so if nobody ran out of room, slot s would go to
// backend j with probability w_j/W, as in weighted rendezvous hashing. The
// quotas only correct the luck of the draw.
//
// The paper's fill instead lets a backend skip taken slots within its turn,
// so how far each backend has got in its permutation depends on everyone
// else, and weighted versions of it (Katran's MaglevV2 paces turns by the
// largest weight, Cilium by the weight sum and the slot number) re-time every
// backend when one changes. Here look k happens at the same time whatever the
// others do, and a change reaches the others only through their quotas. On
// the same permutations that roughly halves the flows moved when a backend
// comes or goes: at M ≈ 100·N the worst single removal moves about 1% of M
// for N >= 80 and about 2% for N = 10, where the paper's fill moves about 2%
// and 3%. An added backend takes slots from the others in proportion to
// their weights. The price is that the table is not the paper's, even with
// equal weights; nothing outside this package depends on that.
//
// The table does not depend on the order of the input: backends are sorted
// by Key, ties are broken by weight and then Key, and each permutation
// depends only on its Key.
package maglev

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// sizes are the largest primes below 2^8 .. 2^17: a prime M makes every
// skip in 1..M-1 walk all slots, and each size about doubles the last.
var sizes = [...]uint32{251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071}

// Sizes lists the table sizes Build accepts, smallest first. It is a copy:
// changing it changes nothing here.
var Sizes = slices.Clone(sizes[:])

// DefaultSize is the table size for a service that does not name one. It is
// at least 100 slots a backend for up to 163 backends.
const DefaultSize = 16381

// MaxBackends is the most backends Build takes in one table. It is far above
// any useful count (a table has at most 131071 slots) and keeps the weight
// sum below 2^52, so no sum of uint32 weights can overflow.
const MaxBackends = 1 << 20

// hashSeed seeds the permutation hash. Changing it reshuffles every table of
// every service at upgrade time, so it is fixed.
const hashSeed = 0x786c6221 // "xlb!"

// ErrNoCapacity is matched (errors.Is) by the error Build returns when no
// backend can take a slot: the list is empty or every weight is 0. A caller
// that drains a whole service installs a table of zeros ("none") instead.
var ErrNoCapacity = errors.New("maglev: no backend can take a slot")

// Backend is one entry to place in a table.
type Backend struct {
	ID     uint32 // value written into the table; 0 is reserved for "none" and is invalid here
	Key    string // stable identity used for the permutation hash, e.g. "198.51.100.7:80"; must be unique
	Weight uint32 // relative weight; 0 = gets no slots (draining)
}

// ValidSize reports whether m is one of Sizes.
func ValidSize(m uint32) bool {
	return slices.Contains(sizes[:], m)
}

// Warnings returns what is wrong, though not fatal, with placing n backends
// of weight > 0 in a table of size m. Shares within 1% and about 1% of other
// flows moved when a backend comes or goes need M >= 100·N, the Maglev
// paper's rule. It returns nil when there is nothing to say or when m is not
// a valid size, which Build reports.
func Warnings(n int, m uint32) []string {
	if n <= 0 || !ValidSize(m) || uint64(m) >= 100*uint64(n) {
		return nil
	}
	advice := "use fewer backends per service, 131071 is the largest size"
	for _, s := range sizes {
		if uint64(s) >= 100*uint64(n) {
			advice = fmt.Sprintf("use table size %d or larger", s)
			break
		}
	}
	w := []string{fmt.Sprintf("table size %d is less than 100 x %d backends; "+
		"one slot is more than 1%% of a backend's share and a backend change moves more flows; %s", m, n, advice)}
	if uint64(n) > uint64(m) {
		w = append(w, fmt.Sprintf("%d backends do not fit in table size %d; at least %d of them get no slot", n, m, uint64(n)-uint64(m)))
	}
	return w
}

// Build returns a table of m backend IDs for backends. It is Builder.Build
// with a new table and fresh buffers.
func Build(backends []Backend, m uint32) ([]uint32, error) {
	if !ValidSize(m) {
		return nil, sizeError(m)
	}
	t := make([]uint32, m)
	var b Builder
	if err := b.Build(t, backends, m); err != nil {
		return nil, err
	}
	return t, nil
}

// Builder builds tables and keeps its buffers between builds, so building
// many tables of similar size allocates nothing after the first. The zero
// value is ready to use. A Builder is not safe for concurrent use.
type Builder struct {
	byKey  []keyRef // all backends in Key order
	order  []uint64 // scratch sort keys: id or inverted weight <<32 | Key rank
	nodes  []node   // backends with weight > 0, heaviest first, then in Key order
	groups []group  // runs of nodes of equal weight
	heap   []int    // indices into groups
	todo   []int    // nodes still short of their quota
	slots  []uint64 // per slot: (owner node index + 1)<<32 | owner's look time; 0 = free
}

// keyRef is a backend's Key and its index in the input. Sorting these
// instead of whole nodes moves a third of the bytes.
type keyRef struct {
	key string
	i   int
}

// node is one backend with weight > 0 as the fill sees it.
type node struct {
	id     uint32
	weight uint32
	need   uint32 // slots still to take to reach the quota
	pos    uint32 // next slot to look at in this backend's permutation
	skip   uint32
	look   uint32 // looks taken so far
}

// group is the backends of one weight. They tie on every seat of the
// apportionment, so they take seats a round at a time, in Key order.
type group struct {
	start, end int // members are nodes[start:end]
	weight     uint32
	turns      uint64 // rounds of seats taken so far
}

// Build fills dst, which must have length m, with backend IDs so that each
// backend holds slots in proportion to its weight. A backend of weight 0 gets
// none, exactly as if it were absent. On error dst is left as it was.
func (b *Builder) Build(dst []uint32, backends []Backend, m uint32) error {
	if !ValidSize(m) {
		return sizeError(m)
	}
	if len(dst) != int(m) {
		return fmt.Errorf("maglev: table has %d slots, want %d", len(dst), m)
	}
	if err := b.load(backends, m); err != nil {
		return err
	}
	b.apportion(m)
	b.fill(dst, m)
	return nil
}

// load validates backends and leaves those with weight > 0 in b.nodes,
// heaviest first and in Key order within a weight, with b.groups over them.
func (b *Builder) load(backends []Backend, m uint32) error {
	if len(backends) == 0 {
		return capacityError("maglev: no backends")
	}
	if len(backends) > MaxBackends {
		return fmt.Errorf("maglev: %d backends exceed the limit of %d", len(backends), MaxBackends)
	}

	// Checking in Key order makes the reported error, too, independent of
	// input order.
	byKey := b.byKey[:0]
	for i := range backends {
		byKey = append(byKey, keyRef{backends[i].Key, i})
	}
	b.byKey = byKey
	slices.SortFunc(byKey, func(x, y keyRef) int {
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
		// Only for the message about a duplicate key, which names both IDs.
		return cmp.Compare(backends[x.i].ID, backends[y.i].ID)
	})
	active := 0
	for r, ref := range byKey {
		be := &backends[ref.i]
		switch {
		case be.Key == "":
			return fmt.Errorf("maglev: backend with id %d has an empty key", be.ID)
		case r > 0 && be.Key == byKey[r-1].key:
			return fmt.Errorf("maglev: backend %s: key is listed twice (ids %d and %d)", be.Key, backends[byKey[r-1].i].ID, be.ID)
		case be.ID == 0:
			return fmt.Errorf("maglev: backend %s: id 0 is reserved for \"none\"", be.Key)
		}
		if be.Weight > 0 {
			active++
		}
	}

	order := b.order[:0]
	for r, ref := range byKey {
		order = append(order, uint64(backends[ref.i].ID)<<32|uint64(r))
	}
	slices.Sort(order)
	for i := 1; i < len(order); i++ {
		if order[i]>>32 == order[i-1]>>32 {
			return fmt.Errorf("maglev: backends %s and %s: id %d is used twice",
				byKey[uint32(order[i-1])].key, byKey[uint32(order[i])].key, order[i]>>32)
		}
	}

	switch {
	case active == 0 && len(backends) == 1:
		return capacityError(fmt.Sprintf("maglev: the only backend, %s, has weight 0", backends[0].Key))
	case active == 0:
		return capacityError(fmt.Sprintf("maglev: all %d backends have weight 0", len(backends)))
	}

	// Drop weight 0 so that draining a backend and removing it give the same
	// table, then order by weight, heaviest first, and by Key within a
	// weight. The index into nodes is then the tie-break everywhere.
	order = order[:0]
	for r, ref := range byKey {
		if w := backends[ref.i].Weight; w > 0 {
			order = append(order, uint64(^w)<<32|uint64(r))
		}
	}
	b.order = order
	slices.Sort(order)
	nodes := b.nodes[:0]
	for _, o := range order {
		be := &backends[byKey[uint32(o)].i]
		h1, h2 := murmur3(be.Key, hashSeed)
		nodes = append(nodes, node{
			id:     be.ID,
			weight: be.Weight,
			pos:    uint32(h1 % uint64(m)),
			skip:   uint32(h2%uint64(m-1)) + 1,
		})
	}
	b.nodes = nodes

	groups := b.groups[:0]
	for i := range nodes {
		if i == 0 || nodes[i].weight != nodes[i-1].weight {
			groups = append(groups, group{start: i, weight: nodes[i].weight})
		}
		groups[len(groups)-1].end = i + 1
	}
	b.groups = groups
	return nil
}

// apportion sets each node's quota by the Sainte-Laguë method: seat k
// (from 0) of a backend of weight w has priority (2k+1)/2w, and the m seats
// of lowest priority are handed out.
//
// Handing them out one by one would cost m heap operations. Instead every
// backend first gets the seats it is certain to win: the m-th seat's
// priority T satisfies T·W + N/2 >= m (at most T·w + 1/2 seats of a backend
// have priority <= T), so every seat below (2m-N)/2W is in. That leaves
// O(N) seats for the heap.
func (b *Builder) apportion(m uint32) {
	nodes, groups := b.nodes, b.groups
	// W <= MaxBackends·(2^32-1) < 2^52 and w·(2m-N) < 2^32·2^18: no overflow.
	var total uint64
	for i := range nodes {
		total += uint64(nodes[i].weight)
	}
	n := uint64(len(nodes))
	left := uint64(m)
	for i := range groups {
		g := &groups[i]
		g.turns = 0
		if 2*uint64(m) > n {
			// Seats k with (2k+1)·W < x: the odd numbers up to (x-1)/W.
			x := uint64(g.weight) * (2*uint64(m) - n)
			g.turns = ((x-1)/total + 1) / 2
		}
		left -= g.turns * uint64(g.end-g.start)
	}

	h := b.heap[:0]
	for i := range groups {
		h = append(h, i)
	}
	b.heap = h
	for i := len(h)/2 - 1; i >= 0; i-- {
		b.down(i)
	}
	partial, extra := -1, uint64(0)
	for left > 0 {
		gi := h[0]
		g := &groups[gi]
		if size := uint64(g.end - g.start); left < size {
			partial, extra = gi, left
			break
		}
		left -= uint64(g.end - g.start)
		g.turns++
		b.down(0)
	}
	for gi := range groups {
		g := &groups[gi]
		for i := g.start; i < g.end; i++ {
			nodes[i].need = uint32(g.turns)
		}
		if gi == partial {
			for i := g.start; i < g.start+int(extra); i++ {
				nodes[i].need++
			}
		}
	}
}

// fill gives each backend its quota of slots, matched as the package doc
// says, by deferred acceptance: each backend walks its permutation until it
// holds its quota, taking a slot that is free or held by a later look, whose
// holder then walks on. The result does not depend on the order the backends
// walk in (it is the unique stable matching, since backends and slots rank
// each other by the same look times), and no look is made twice, so the cost
// is the total length of the walks, about M·ln(M/N) looks.
func (b *Builder) fill(dst []uint32, m uint32) {
	if cap(b.slots) < int(m) {
		b.slots = make([]uint64, m)
	}
	slots := b.slots[:m]
	clear(slots)
	clock := clockFor(m)
	nodes := b.nodes
	todo := b.todo[:0]
	for j := len(nodes) - 1; j >= 0; j-- {
		if nodes[j].need > 0 {
			todo = append(todo, j)
		}
	}
	for len(todo) > 0 {
		j := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		n := &nodes[j]
		w := uint64(n.weight)
		// A backend that still needs a slot has not looked at every slot
		// yet: if it had, all would be held, yet quotas add up to m. So
		// look < m always indexes clock.
		for n.need > 0 {
			s, look := n.pos, n.look
			if n.pos += n.skip; n.pos >= m {
				n.pos -= m
			}
			n.look++
			t := clock[look]
			held := slots[s]
			if held != 0 {
				// Compare t/w with the holder's t'/w', cross-multiplied:
				// t < 2^32 and w < 2^32.
				k := int(held>>32) - 1
				x := uint64(t) * uint64(nodes[k].weight)
				y := (held & 0xffffffff) * w
				if x > y || x == y && j > k {
					continue
				}
				if nodes[k].need == 0 {
					todo = append(todo, k)
				}
				nodes[k].need++
			}
			slots[s] = uint64(j+1)<<32 | uint64(t)
			n.need--
		}
	}
	b.todo = todo
	for s, held := range slots {
		dst[s] = nodes[held>>32-1].id
	}
}

// before reports whether group x's next round of seats comes before group
// y's: (2kx+1)/2wx < (2ky+1)/2wy, cross-multiplied to stay in integers.
func (b *Builder) before(x, y int) bool {
	gx, gy := &b.groups[x], &b.groups[y]
	tx := (2*gx.turns + 1) * uint64(gy.weight)
	ty := (2*gy.turns + 1) * uint64(gx.weight)
	if tx != ty {
		return tx < ty
	}
	return x < y // groups are indexed heaviest first
}

func (b *Builder) down(i int) {
	h := b.heap
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if r := c + 1; r < len(h) && b.before(h[r], h[c]) {
			c = r
		}
		if !b.before(h[c], h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

func sizeError(m uint32) error {
	s := make([]string, len(sizes))
	for i, v := range sizes {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return fmt.Errorf("maglev: table size %d is not one of %s", m, strings.Join(s, ", "))
}

// capacityError is an error that matches ErrNoCapacity but keeps its own
// message, which names the backends.
type capacityError string

func (e capacityError) Error() string { return string(e) }

func (e capacityError) Is(target error) bool { return target == ErrNoCapacity }

// clocks caches clockFor's tables, one per size, built on first use.
var clocks [len(sizes)]struct {
	once sync.Once
	t    []uint32
}

// clockFor returns the look times for table size m, scaled by 2^28:
// t[k] = Σ 2^28/x for x = m-k .. m, that is 2^28·(H(m) - H(m-k-1)). Integer
// arithmetic keeps the tables the same on every machine, which two load
// balancers sharing a VIP need; t[m-1] < 2^28·(ln m + 1) < 2^32.
func clockFor(m uint32) []uint32 {
	c := &clocks[slices.Index(sizes[:], m)]
	c.once.Do(func() {
		t := make([]uint32, m)
		var sum uint32
		for k := range t {
			sum += uint32((1 << 28) / (uint64(m) - uint64(k)))
			t[k] = sum
		}
		c.t = t
	})
	return c.t
}
