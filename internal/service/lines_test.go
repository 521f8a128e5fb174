package service

import (
	"net/netip"
	"reflect"
	"testing"
)

// TestWithoutLines: every Pos in a configuration, however deep, loses its
// line and keeps its file; the original is untouched, and nil stays nil.
func TestWithoutLines(t *testing.T) {
	at := func(line int) Pos { return Pos{File: "k.conf", Line: line} }
	in := VRRPInstance{
		Name: "VI_1", Auth: &VRRPAuth{Type: "PASS", Pass: "x"}, Source: at(1),
		VirtualIPs:   []VirtualIP{{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Source: at(2)}},
		TrackScripts: []Track{{Name: "chk", Weight: -10, Source: at(3)}},
	}
	cfg := []any{[]VRRPInstance{in}, []SyncGroup{{Name: "G", Source: at(4)}}, map[string]Track{"eth0": {Name: "eth0", Source: at(5)}}}

	got := WithoutLines(cfg)

	want := []any{
		[]VRRPInstance{{
			Name: "VI_1", Auth: &VRRPAuth{Type: "PASS", Pass: "x"}, Source: at(0),
			VirtualIPs:   []VirtualIP{{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Source: at(0)}},
			TrackScripts: []Track{{Name: "chk", Weight: -10, Source: at(0)}},
		}},
		[]SyncGroup{{Name: "G", Source: at(0)}},
		map[string]Track{"eth0": {Name: "eth0", Source: at(0)}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WithoutLines:\n got %#v\nwant %#v", got, want)
	}
	if g := got[0].([]VRRPInstance)[0]; g.TrackInterfaces != nil || g.UnicastPeers != nil {
		t.Errorf("nil slices became %#v and %#v", g.TrackInterfaces, g.UnicastPeers)
	}
	if in.Source.Line != 1 || in.VirtualIPs[0].Source.Line != 2 || in.TrackScripts[0].Source.Line != 3 {
		t.Errorf("the original changed: %+v", in)
	}
	if got[0].([]VRRPInstance)[0].Auth == in.Auth {
		t.Error("a pointer is shared with the original")
	}
}

// TestWithoutPositions: the files go too, in nested values.
func TestWithoutPositions(t *testing.T) {
	c := Check{Kind: CheckHTTP, Source: Pos{File: "a.conf", Line: 3}, URLs: []URL{{Path: "/", Source: Pos{File: "b.conf", Line: 9}}}}
	got := WithoutPositions(c)
	want := Check{Kind: CheckHTTP, URLs: []URL{{Path: "/"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("WithoutPositions:\n got %#v\nwant %#v", got, want)
	}
	if c.URLs[0].Source.File != "b.conf" {
		t.Errorf("the original changed: %+v", c)
	}
}
