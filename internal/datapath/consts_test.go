package datapath

import "testing"

// TestCounterNames: every value of enum xlb_counter has a name of its own.
// A counter added in C without one in counterNames would be listed as "".
func TestCounterNames(t *testing.T) {
	seen := map[string]Counter{}
	for c := range counterMax {
		name := c.String()
		if name == "" {
			t.Errorf("counter %d has no name", uint32(c))
			continue
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("counters %d and %d are both %q", uint32(prev), uint32(c), name)
		}
		seen[name] = c
	}
}

// TestLimits: the limits Go checks ids and sizes against are the map sizes
// the object declares. They stay untyped Go constants, which callers
// compare with ints and uint32s alike, so no generated enum can supply
// them; this holds them to bpf/lb_consts.h instead.
func TestLimits(t *testing.T) {
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m    string
		want uint32
	}{
		{lbMapServices, MaxServices},
		{lbMapBackends, MaxBackends},
		{lbMapFlows4, DefaultFlowTableSize},
		{lbMapFlows6, DefaultFlowTableSize},
		{lbMapFrags, DefaultFragmentTableSize},
		{lbMapStats, MaxServices + MaxBackends},
		{lbMapMaglev, slotsPerService * MaxServices},
	} {
		if got := spec.Maps[c.m].MaxEntries; got != c.want {
			t.Errorf("map %s: %d entries in the object, Go assumes %d", c.m, got, c.want)
		}
	}
}
