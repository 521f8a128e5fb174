package ha

import (
	"context"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestTrackInterfaces follows a veth's link state in a namespace of the
// test's own: the first report is the state at start, then every change
// of a tracked interface is reported, and nothing of the others.
func TestTrackInterfaces(t *testing.T) {
	testutil.EnterNewNetns(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "trk0"}, PeerName: "trk1"}); err != nil {
		t.Fatal(err)
	}
	link := func(name string) netlink.Link {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if err := netlink.LinkSetUp(link("trk1")); err != nil {
		t.Fatal(err)
	}

	type report struct {
		name string
		up   bool
	}
	reports := make(chan report, 64)
	ctx, cancel := context.WithCancel(context.Background())
	set := &Set{cancel: cancel}
	defer set.Stop()
	set.trackInterfaces(ctx, []string{"trk0"}, func(name string, up bool) { reports <- report{name, up} }, &warnings{})

	// wait returns once the tracker has reported want for trk0; reports
	// of unchanged state in between (netlink repeats itself) are fine.
	wait := func(want bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r := <-reports:
				if r.name != "trk0" {
					t.Fatalf("report for %s, which is not tracked", r.name)
				}
				if r.up == want {
					return
				}
			case <-deadline:
				t.Fatalf("no report of trk0 up=%v within 10 s", want)
			}
		}
	}
	wait(false) // created down
	if err := netlink.LinkSetUp(link("trk0")); err != nil {
		t.Fatal(err)
	}
	wait(true)
	if err := netlink.LinkSetDown(link("trk1")); err != nil { // the peer: carrier goes
		t.Fatal(err)
	}
	wait(false)
}
