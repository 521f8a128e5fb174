package ifwatch

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/xlb-project/xlb/internal/testutil"
)

func TestNext(t *testing.T) {
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	up := State{Index: 4, MAC: macA}
	for _, tc := range []struct {
		name    string
		last    State
		u       update
		want    State
		changed bool
	}{
		{"another interface", up, update{name: "eth1", index: 5, mac: macB}, up, false},
		{"the same again", up, update{name: "eth0", index: 4, mac: macA}, up, false},
		{"a new MAC", up, update{name: "eth0", index: 4, mac: macB}, State{Index: 4, MAC: macB}, true},
		{"deleted", up, update{deleted: true, name: "eth0", index: 4}, State{}, true},
		{"another one deleted", up, update{deleted: true, name: "eth1", index: 5}, up, false},
		{"deleted while gone", State{}, update{deleted: true, name: "eth0", index: 4}, State{}, false},
		{"back with another index", State{}, update{name: "eth0", index: 9, mac: macA}, State{Index: 9, MAC: macA}, true},
	} {
		got, changed := next("eth0", tc.last, tc.u)
		if changed != tc.changed || !cmp.Equal(got, tc.want) {
			t.Errorf("%s: next = %+v, %v; want %+v, %v", tc.name, got, changed, tc.want, tc.changed)
		}
	}
}

// TestWatch follows one end of a veth pair in a namespace of the test's own
// through a new MAC, its deletion and its return.
func TestWatch(t *testing.T) {
	testutil.EnterNewNetns(t)
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	add := func() int {
		t.Helper()
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xw0", HardwareAddr: macA}, PeerName: "xw1"}); err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName("xw0")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Index
	}
	first := add()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states, err := Watch(ctx, "xw0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	expect := func(what string, want State) {
		t.Helper()
		select {
		case got := <-states:
			if !cmp.Equal(got, want) {
				t.Fatalf("%s: %+v, want %+v", what, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no event", what)
		}
	}
	expect("at the start", State{Name: "xw0", Index: first, MAC: macA})
	l, _ := netlink.LinkByName("xw0")
	if err := netlink.LinkSetHardwareAddr(l, macB); err != nil {
		t.Fatal(err)
	}
	expect("a new MAC", State{Name: "xw0", Index: first, MAC: macB})
	if err := netlink.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	expect("deleted", State{Name: "xw0"})
	again := add()
	expect("back", State{Name: "xw0", Index: again, MAC: macA})
}

// TestWatchEach follows two interfaces on one channel, each state naming
// its own.
func TestWatchEach(t *testing.T) {
	testutil.EnterNewNetns(t)
	index := map[string]int{}
	for _, name := range []string{"xa0", "xb0"} {
		mac := net.HardwareAddr{2, 0, 0, 0, 0, name[1]}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}, PeerName: name[:2] + "1"}); err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		index[name] = l.Attrs().Index
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states, err := WatchEach(ctx, []string{"xa0", "xb0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	next := func() State {
		t.Helper()
		select {
		case st := <-states:
			return st
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return State{}
	}
	got := map[string]State{}
	for range 2 {
		st := next()
		got[st.Name] = st
	}
	want := map[string]State{
		"xa0": {Name: "xa0", Index: index["xa0"], MAC: net.HardwareAddr{2, 0, 0, 0, 0, 'a'}},
		"xb0": {Name: "xb0", Index: index["xb0"], MAC: net.HardwareAddr{2, 0, 0, 0, 0, 'b'}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("at the start (-want +got):\n%s", diff)
	}
	l, _ := netlink.LinkByName("xb0")
	newMAC := net.HardwareAddr{2, 0, 0, 0, 0, 0xbb}
	if err := netlink.LinkSetHardwareAddr(l, newMAC); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(State{Name: "xb0", Index: index["xb0"], MAC: newMAC}, next()); diff != "" {
		t.Errorf("xb0's new MAC (-want +got):\n%s", diff)
	}
}

// fakeProgram records what Fit asks of it.
type fakeProgram struct{ calls []string }

func (f *fakeProgram) Reattach() error { f.calls = append(f.calls, "reattach"); return nil }
func (f *fakeProgram) SetMAC(m net.HardwareAddr) error {
	f.calls = append(f.calls, "mac "+m.String())
	return nil
}

// TestFit: a new MAC goes into the program, an interface back with another
// index gets it attached again first, and one that is gone asks nothing.
func TestFit(t *testing.T) {
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	up := State{Index: 4, MAC: macA}
	for _, tc := range []struct {
		name     string
		last, st State
		want     []string
	}{
		{"unchanged", up, up, nil},
		{"new MAC", up, State{Index: 4, MAC: macB}, []string{"mac 02:00:00:00:00:0b"}},
		{"gone", up, State{}, nil},
		{"back, same MAC", State{}, State{Index: 9, MAC: macA}, []string{"reattach", "mac 02:00:00:00:00:0a"}},
		{"back, index changed only", up, State{Index: 9, MAC: macA}, []string{"reattach"}},
	} {
		var p fakeProgram
		Fit(&p, "eth0", tc.last, tc.st, slog.New(slog.DiscardHandler))
		if diff := cmp.Diff(tc.want, p.calls); diff != "" {
			t.Errorf("%s: calls (-want +got):\n%s", tc.name, diff)
		}
	}
}
