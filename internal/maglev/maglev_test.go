package maglev

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/testutil"
)

// backends returns n backends with TEST-NET keys, IDs 1..n and the weights
// weight gives.
func backends(n int, weight func(i int) uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{
			ID:     uint32(i + 1),
			Key:    fmt.Sprintf("198.51.100.%d:%d", 1+i%254, 80+i/254),
			Weight: weight(i),
		}
	}
	return bs
}

func equal(int) uint32 { return 1 }

// cyclic gives weights 1..10, so a table mixes ten weights.
func cyclic(i int) uint32 { return uint32(1 + i%10) }

func mustBuild(t testing.TB, bs []Backend, m uint32) []uint32 {
	t.Helper()
	table, err := Build(bs, m)
	if err != nil {
		t.Fatalf("Build(%d backends, %d): %v", len(bs), m, err)
	}
	return table
}

// counts returns the slots each ID holds, and fails on a slot no backend of
// bs holds.
func counts(t testing.TB, bs []Backend, table []uint32) map[uint32]int {
	t.Helper()
	known := make(map[uint32]bool, len(bs))
	for _, b := range bs {
		known[b.ID] = true
	}
	c := make(map[uint32]int)
	for s, id := range table {
		if !known[id] {
			t.Fatalf("slot %d holds id %d, which is no backend's", s, id)
		}
		c[id]++
	}
	return c
}

func without(bs []Backend, i int) []Backend {
	return slices.Concat(bs[:i], bs[i+1:])
}

// moveBound is the most slots, of those a change to one backend does not
// own, that may move: 2% of M, as the Maglev paper has it for M >= 100·N,
// but at least 2·√M. The slots a removed backend frees go to whichever
// backend looked at each first after it; how many each one gets is random,
// off its quota by about the square root of what it gains, and every slot
// over quota pushes another flow elsewhere. That sums to about √M moved
// slots whatever N is (1.2 to 1.6·√M worst case in measurements over random
// keys), which is more than 2% below M ≈ 10000. The paper's own fill moves
// more: at M = 1021, N = 10 its worst removal moves 2.9% of M on the median
// key set, against 2.1% here.
func moveBound(m uint32) int {
	return int(max(0.02*float64(m), 2*math.Sqrt(float64(m))))
}

func TestMurmur3(t *testing.T) {
	// Outputs of the reference MurmurHash3_x64_128, cross-checked with an
	// independent implementation.
	tests := []struct {
		in     string
		seed   uint32
		h1, h2 uint64
	}{
		{"", 0, 0, 0},
		{"", 0x786c6221, 0x92a1289bc132c065, 0xa73bb44b8b650eb8},
		{"a", 0, 0x85555565f6597889, 0xe6b53a48510e895a},
		{"hello", 0, 0xcbd8a7b341bd9b02, 0x5b1e906a48ae1d19},
		{"198.51.100.7:80", 0x786c6221, 0xf88d0e636f7a159a, 0x1920254f8c8c5090},
		{"[2001:db8::1]:443", 0, 0xe4cb9499f62ce9a5, 0x85dc5e27b5e2e0ed},
		{"[2001:db8::1]:443", 0x786c6221, 0xfaa4e471c0601e3c, 0xdb45ef236a9fbfbc},
		{"The quick brown fox jumps over the lazy dog", 0, 0xe34bbc7bbc071b6c, 0x7a433ca9c49a9347},
		{"The quick brown fox jumps over the lazy dog", 0x786c6221, 0xee9f5de4e69fe086, 0x252f8d4af45ae2a1},
	}
	for _, tt := range tests {
		h1, h2 := murmur3(tt.in, tt.seed)
		if h1 != tt.h1 || h2 != tt.h2 {
			t.Errorf("murmur3(%q, %#x) = %#016x, %#016x, want %#016x, %#016x", tt.in, tt.seed, h1, h2, tt.h1, tt.h2)
		}
	}
}

// TestGolden pins the tables: a change here changes where every flow of
// every service goes after an upgrade, so it must be deliberate.
func TestGolden(t *testing.T) {
	cases := []struct {
		name     string
		backends []Backend
		m        uint32
	}{
		{"three equal", backends(3, equal), 251},
		{"five mixed, one draining", []Backend{
			{ID: 17, Key: "198.51.100.7:80", Weight: 3},
			{ID: 4, Key: "198.51.100.8:80", Weight: 1},
			{ID: 9, Key: "[2001:db8::10]:80", Weight: 2},
			{ID: 12, Key: "203.0.113.5:8080", Weight: 0},
			{ID: 30, Key: "192.0.2.200:80", Weight: 5},
		}, 251},
		{"ten cyclic", backends(10, cyclic), 1021},
	}
	var out strings.Builder
	fmt.Fprintf(&out, "# Maglev tables; regenerate with: go test ./internal/maglev -update\n")
	for _, c := range cases {
		table := mustBuild(t, c.backends, c.m)
		n := counts(t, c.backends, table)
		fmt.Fprintf(&out, "\n== %s, m=%d\n", c.name, c.m)
		for _, b := range c.backends {
			fmt.Fprintf(&out, "id %d key %s weight %d slots %d\n", b.ID, b.Key, b.Weight, n[b.ID])
		}
		for i := 0; i < len(table); i += 16 {
			fmt.Fprintf(&out, "%5d:", i)
			for _, id := range table[i:min(i+16, len(table))] {
				fmt.Fprintf(&out, " %2d", id)
			}
			out.WriteString("\n")
		}
	}
	path := filepath.Join("testdata", "build.golden")
	testutil.Golden(t, path, []byte(out.String()))
}

func TestEqualWeights(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 10, 64, 163, 1000, 10000} {
		for _, m := range []uint32{251, 1021, 16381, 131071} {
			t.Run(fmt.Sprintf("n=%d/m=%d", n, m), func(t *testing.T) {
				bs := backends(n, func(int) uint32 { return 7 })
				c := counts(t, bs, mustBuild(t, bs, m))
				lo, hi := int(m)/n, (int(m)+n-1)/n
				for _, b := range bs {
					if got := c[b.ID]; got < lo || got > hi {
						t.Errorf("backend %s holds %d slots, want %d..%d", b.Key, got, lo, hi)
					}
				}
			})
		}
	}
}

// weightSets are mixes of weights to check shares with.
var weightSets = []struct {
	name   string
	weight func(i int) uint32
}{
	{"cyclic 1..10", cyclic},
	{"powers of two", func(i int) uint32 { return 1 << (i % 8) }},
	{"one heavy", func(i int) uint32 { return uint32(max(1, 50*(1-i))) }},
	// Near the top of uint32: a uint32 sum of these overflows.
	{"huge", func(i int) uint32 { return math.MaxUint32 - uint32(i)*0x01000000 }},
	{"spread", func(i int) uint32 { return uint32(1 + i*i*37%1000) }},
}

func TestMixedWeights(t *testing.T) {
	for _, ws := range weightSets {
		for _, n := range []int{2, 3, 10, 50, 163} {
			for _, m := range Sizes {
				if uint64(m) < 100*uint64(n) || m > 32749 {
					continue
				}
				t.Run(fmt.Sprintf("%s/n=%d/m=%d", ws.name, n, m), func(t *testing.T) {
					bs := backends(n, ws.weight)
					c := counts(t, bs, mustBuild(t, bs, m))
					var total float64
					for _, b := range bs {
						total += float64(b.Weight)
					}
					for _, b := range bs {
						share := float64(m) * float64(b.Weight) / total
						if d := math.Abs(float64(c[b.ID]) - share); d > max(0.05*share, 2) {
							t.Errorf("backend %s (weight %d) holds %d slots, share %.1f", b.Key, b.Weight, c[b.ID], share)
						}
					}
				})
			}
		}
	}
}

// TestApportionment checks the counts exactly: they are Sainte-Laguë's, so
// some divisor d puts every backend's (2c-1)/2w at or below d and its
// (2c+1)/2w at or above it, at any M and N.
func TestApportionment(t *testing.T) {
	for _, ws := range weightSets {
		for _, n := range []int{2, 7, 60, 300} {
			for _, m := range []uint32{251, 4093} {
				t.Run(fmt.Sprintf("%s/n=%d/m=%d", ws.name, n, m), func(t *testing.T) {
					bs := backends(n, ws.weight)
					c := counts(t, bs, mustBuild(t, bs, m))
					// Cross-multiplied: (2ci-1)·wj <= (2cj+1)·wi for all i, j.
					for _, bi := range bs {
						ci := uint64(c[bi.ID])
						if ci == 0 {
							continue
						}
						for _, bj := range bs {
							cj := uint64(c[bj.ID])
							if (2*ci-1)*uint64(bj.Weight) > (2*cj+1)*uint64(bi.Weight) {
								t.Fatalf("backend %s (weight %d) holds %d slots but %s (weight %d) only %d",
									bi.Key, bi.Weight, ci, bj.Key, bj.Weight, cj)
							}
						}
					}
				})
			}
		}
	}
}

func TestRemoveOne(t *testing.T) {
	cases := []struct {
		n int
		m uint32
	}{{10, 1021}, {20, 2039}, {40, 4093}, {81, 8191}, {100, 16381}, {163, 16381}, {50, 65521}}
	for _, ws := range weightSets[:2] {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/n=%d/m=%d", ws.name, c.n, c.m), func(t *testing.T) {
				bs := backends(c.n, ws.weight)
				before := mustBuild(t, bs, c.m)
				worst := 0
				for r, gone := range bs {
					after := mustBuild(t, without(bs, r), c.m)
					moved := 0
					for s := range before {
						if before[s] != gone.ID && after[s] != before[s] {
							moved++
						}
					}
					if moved > moveBound(c.m) {
						t.Errorf("removing %s moves %d slots of others (%.2f%% of M), want at most %d",
							gone.Key, moved, 100*float64(moved)/float64(c.m), moveBound(c.m))
					}
					worst = max(worst, moved)
				}
				t.Logf("worst: %d slots, %.2f%% of M", worst, 100*float64(worst)/float64(c.m))
			})
		}
	}
}

// TestAddOne checks where a new backend's slots come from. A slot goes to
// the backend whose look time there is earliest; its holder's look time is
// the least of all, which is distributed alike whichever backend holds it
// (a race of exponential clocks), so the newcomer beats a holder of weight w
// on a fraction of w/W of its slots: it takes Binomial(T, w/W) of its T slots
// from that backend. The tolerance is 4 standard deviations, √(T·w/W), plus
// 2 slots for the quotas, which shift a slot here and there; the slots that
// move between the old backends are bounded as for a removal.
func TestAddOne(t *testing.T) {
	cases := []struct {
		n      int
		m      uint32
		weight uint32
	}{{5, 4093, 3}, {10, 16381, 5}, {10, 16381, 1}, {40, 16381, 10}, {100, 65521, 4}}
	for _, ws := range weightSets {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/n=%d/m=%d/weight=%d", ws.name, c.n, c.m, c.weight), func(t *testing.T) {
				bs := backends(c.n, ws.weight)
				before := mustBuild(t, bs, c.m)
				added := Backend{ID: 1000, Key: "203.0.113.99:80", Weight: c.weight}
				after := mustBuild(t, append(slices.Clone(bs), added), c.m)

				taken := make(map[uint32]int)
				total, churn := 0, 0
				for s := range before {
					switch {
					case after[s] == added.ID:
						taken[before[s]]++
						total++
					case after[s] != before[s]:
						churn++
					}
				}
				var weights float64
				for _, b := range bs {
					weights += float64(b.Weight)
				}
				for _, b := range bs {
					want := float64(total) * float64(b.Weight) / weights
					if d := math.Abs(float64(taken[b.ID]) - want); d > 4*math.Sqrt(want)+2 {
						t.Errorf("new backend took %d slots from %s (weight %d), want %.1f ± %.1f",
							taken[b.ID], b.Key, b.Weight, want, 4*math.Sqrt(want)+2)
					}
				}
				if churn > moveBound(c.m) {
					t.Errorf("%d slots moved between the old backends, want at most %d", churn, moveBound(c.m))
				}
			})
		}
	}
}

func TestDrainIsRemoval(t *testing.T) {
	bs := backends(20, cyclic)
	drained := slices.Clone(bs)
	drained[7].Weight = 0
	if diff := cmp.Diff(mustBuild(t, without(bs, 7), 2039), mustBuild(t, drained, 2039)); diff != "" {
		t.Errorf("weight 0 and removal give different tables (-removed +drained):\n%s", diff)
	}
}

func TestOrderIndependence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name     string
		backends []Backend
		m        uint32
	}{
		{"equal", backends(10, equal), 1021},
		{"cyclic with drained", append(backends(50, cyclic), Backend{ID: 99, Key: "192.0.2.1:80"}), 8191},
		{"more backends than slots", backends(600, cyclic), 251},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := mustBuild(t, c.backends, c.m)
			for i := range 10 {
				shuffled := slices.Clone(c.backends)
				if i == 0 {
					slices.Reverse(shuffled)
				} else {
					rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				}
				if diff := cmp.Diff(want, mustBuild(t, shuffled, c.m)); diff != "" {
					t.Fatalf("shuffle %d gives another table (-sorted +shuffled):\n%s", i, diff)
				}
			}
		})
	}

	// With several faults, the one reported does not depend on order either.
	faulty := append(backends(6, equal),
		Backend{ID: 3, Key: "203.0.113.1:80", Weight: 1},
		Backend{ID: 0, Key: "203.0.113.2:80", Weight: 1},
		Backend{ID: 8, Key: "198.51.100.2:80", Weight: 1})
	var first string
	for i := range 10 {
		rng.Shuffle(len(faulty), func(i, j int) { faulty[i], faulty[j] = faulty[j], faulty[i] })
		_, err := Build(faulty, 251)
		if err == nil {
			t.Fatal("Build accepted duplicate keys and ids")
		}
		if i == 0 {
			first = err.Error()
		} else if err.Error() != first {
			t.Fatalf("shuffle %d reports %q, shuffle 0 reported %q", i, err, first)
		}
	}
}

// TestBuilderReuse checks that buffers left from other builds, larger or
// smaller, do not leak into a table, and that a warm Builder allocates
// nothing.
func TestBuilderReuse(t *testing.T) {
	big, small := backends(300, cyclic), backends(4, equal)
	want := mustBuild(t, big, 32749)
	var b Builder
	for _, step := range []struct {
		bs []Backend
		m  uint32
	}{{big, 32749}, {small, 251}, {big[:100], 16381}, {big, 32749}} {
		dst := make([]uint32, step.m)
		if err := b.Build(dst, step.bs, step.m); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(mustBuild(t, step.bs, step.m), dst); diff != "" {
			t.Fatalf("%d backends, m=%d: reused Builder differs from a fresh one (-fresh +reused):\n%s", len(step.bs), step.m, diff)
		}
	}
	dst := make([]uint32, 32749)
	allocs := testing.AllocsPerRun(5, func() {
		if err := b.Build(dst, big, 32749); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("warm Builder.Build allocates %v times, want 0", allocs)
	}
	if diff := cmp.Diff(want, dst); diff != "" {
		t.Errorf("table differs after reuse (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	ok := backends(3, equal)
	tests := []struct {
		name     string
		backends []Backend
		m        uint32
		dst      int // length of dst for Builder.Build; -1: m
		want     string
		empty    bool // errors.Is(err, ErrNoCapacity)
	}{
		{name: "size not prime", backends: ok, m: 1000, dst: -1,
			want: "maglev: table size 1000 is not one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071"},
		{name: "size 0", backends: ok, m: 0, dst: -1,
			want: "maglev: table size 0 is not one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071"},
		{name: "prime not in list", backends: ok, m: 65537, dst: -1,
			want: "maglev: table size 65537 is not one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071"},
		{name: "dst too short", backends: ok, m: 251, dst: 250,
			want: "maglev: table has 250 slots, want 251"},
		{name: "no backends", backends: nil, m: 251, dst: -1,
			want: "maglev: no backends", empty: true},
		{name: "empty key", backends: append(backends(2, equal), Backend{ID: 4, Weight: 1}), m: 251, dst: -1,
			want: "maglev: backend with id 4 has an empty key"},
		{name: "duplicate key", backends: append(backends(3, equal), Backend{ID: 9, Key: "198.51.100.2:80", Weight: 3}), m: 251, dst: -1,
			want: "maglev: backend 198.51.100.2:80: key is listed twice (ids 2 and 9)"},
		{name: "id 0", backends: append(backends(3, equal), Backend{ID: 0, Key: "198.51.100.7:80", Weight: 1}), m: 251, dst: -1,
			want: `maglev: backend 198.51.100.7:80: id 0 is reserved for "none"`},
		{name: "id 0 at weight 0", backends: append(backends(3, equal), Backend{ID: 0, Key: "198.51.100.7:80"}), m: 251, dst: -1,
			want: `maglev: backend 198.51.100.7:80: id 0 is reserved for "none"`},
		{name: "duplicate id", backends: append(backends(3, equal), Backend{ID: 3, Key: "198.51.100.20:80", Weight: 1}), m: 251, dst: -1,
			want: "maglev: backends 198.51.100.20:80 and 198.51.100.3:80: id 3 is used twice"},
		{name: "all weight 0", backends: backends(3, func(int) uint32 { return 0 }), m: 251, dst: -1,
			want: "maglev: all 3 backends have weight 0", empty: true},
		{name: "only backend weight 0", backends: backends(1, func(int) uint32 { return 0 }), m: 251, dst: -1,
			want: "maglev: the only backend, 198.51.100.1:80, has weight 0", empty: true},
		{name: "too many", backends: make([]Backend, MaxBackends+1), m: 131071, dst: -1,
			want: "maglev: 1048577 backends exceed the limit of 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.dst < 0 {
				table, err := Build(tt.backends, tt.m)
				checkErr(t, "Build", err, tt.want, tt.empty)
				if table != nil {
					t.Errorf("Build returned a table of %d slots with its error", len(table))
				}
			}
			dst := make([]uint32, tt.m)
			if tt.dst >= 0 {
				dst = make([]uint32, tt.dst)
			}
			for i := range dst {
				dst[i] = 77
			}
			var b Builder
			checkErr(t, "Builder.Build", b.Build(dst, tt.backends, tt.m), tt.want, tt.empty)
			if i := slices.IndexFunc(dst, func(id uint32) bool { return id != 77 }); i >= 0 {
				t.Errorf("Builder.Build wrote slot %d before failing", i)
			}
		})
	}
}

func checkErr(t *testing.T, fn string, err error, want string, empty bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want error %q", fn, want)
	}
	if err.Error() != want {
		t.Errorf("%s error:\n got %q\nwant %q", fn, err, want)
	}
	if errors.Is(err, ErrNoCapacity) != empty {
		t.Errorf("%s: errors.Is(%q, ErrNoCapacity) = %v, want %v", fn, err, !empty, empty)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		n    int
		m    uint32
		want []string
	}{
		{0, 251, nil},
		{2, 251, nil},
		{3, 251, []string{"table size 251 is less than 100 x 3 backends; one slot is more than 1% of a backend's share and a backend change moves more flows; use table size 509 or larger"}},
		{5, 251, []string{"table size 251 is less than 100 x 5 backends; one slot is more than 1% of a backend's share and a backend change moves more flows; use table size 509 or larger"}},
		{163, DefaultSize, nil},
		{164, DefaultSize, []string{"table size 16381 is less than 100 x 164 backends; one slot is more than 1% of a backend's share and a backend change moves more flows; use table size 32749 or larger"}},
		{10000, DefaultSize, []string{"table size 16381 is less than 100 x 10000 backends; one slot is more than 1% of a backend's share and a backend change moves more flows; use fewer backends per service, 131071 is the largest size"}},
		{300, 251, []string{
			"table size 251 is less than 100 x 300 backends; one slot is more than 1% of a backend's share and a backend change moves more flows; use table size 32749 or larger",
			"300 backends do not fit in table size 251; at least 49 of them get no slot",
		}},
		{5, 1000, nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Warnings(tt.n, tt.m)); diff != "" {
			t.Errorf("Warnings(%d, %d) (-want +got):\n%s", tt.n, tt.m, diff)
		}
	}
}

func TestSizes(t *testing.T) {
	isPrime := func(n uint32) bool {
		if n < 2 {
			return false
		}
		for d := uint32(2); d*d <= n; d++ {
			if n%d == 0 {
				return false
			}
		}
		return true
	}
	for i, m := range Sizes {
		limit := uint32(1) << (8 + i)
		if !isPrime(m) || m >= limit {
			t.Errorf("Sizes[%d] = %d, want a prime below %d", i, m, limit)
		}
		for p := m + 1; p < limit; p++ {
			if isPrime(p) {
				t.Errorf("Sizes[%d] = %d, but %d is a larger prime below %d", i, m, p, limit)
			}
		}
		if !ValidSize(m) {
			t.Errorf("ValidSize(%d) = false", m)
		}
	}
	for _, m := range []uint32{0, 1, 250, 252, 16380, 65537, 131072, math.MaxUint32} {
		if ValidSize(m) {
			t.Errorf("ValidSize(%d) = true", m)
		}
	}
	if !ValidSize(DefaultSize) {
		t.Errorf("DefaultSize %d is not valid", DefaultSize)
	}

	saved := Sizes[0]
	Sizes[0] = 1000
	defer func() { Sizes[0] = saved }()
	if ValidSize(1000) || !ValidSize(251) {
		t.Error("changing Sizes changed what ValidSize accepts")
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		bs := backends(n, cyclic)
		for _, m := range []uint32{16381, 131071} {
			b.Run(fmt.Sprintf("n=%d/m=%d", n, m), func(b *testing.B) {
				b.ReportAllocs()
				var bl Builder
				dst := make([]uint32, m)
				for b.Loop() {
					if err := bl.Build(dst, bs, m); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(m), "ns/slot")
			})
		}
	}
}
