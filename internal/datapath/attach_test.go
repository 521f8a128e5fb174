package datapath

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlb-project/xlb/internal/testutil"
)

// inTestNetns moves the test into a network namespace of its own holding
// a veth pair, xlb0 and xlb1, both up.
func inTestNetns(t *testing.T) {
	t.Helper()
	testutil.EnterNewNetns(t)
	inTestVeth(t)
}

// inTestVeth adds the veth pair xlb0, xlb1, both up.
func inTestVeth(t *testing.T) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0"}, PeerName: "xlb1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, name := range []string{"xlb0", "xlb1"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("%s up: %v", name, err)
		}
	}
}

// attachedProg is the id of the XDP program on the interface, 0 for none.
func attachedProg(t *testing.T, iface string) uint32 {
	t.Helper()
	l, err := netlink.LinkByName(iface)
	if err != nil {
		t.Fatalf("%s: %v", iface, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}

func linkID(t *testing.T, d *Datapath) link.ID {
	t.Helper()
	info, err := d.link.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

func progID(t *testing.T, d *Datapath) uint32 {
	t.Helper()
	info, err := d.objs.XlbXdp.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("kernel reports no program id")
	}
	return uint32(id)
}

// TestAttachSurvivesProcessDeath walks the life of the pinned XDP link: a
// run that ends without detaching (a crash) leaves its program forwarding;
// the next run replaces it in place; a run in another mode starts afresh;
// Close with Unpin detaches.
func TestAttachSurvivesProcessDeath(t *testing.T) {
	inTestNetns(t)
	pins := mountBPFFS(t)
	loadFresh := func() *Datapath {
		d := load(t, pins, Options{})
		t.Cleanup(func() { d.Close() })
		return d
	}

	first := loadFresh()
	if err := first.Attach("xlb0", ModeGeneric); err != nil {
		t.Fatal(err)
	}
	want := progID(t, first)
	if got := attachedProg(t, "xlb0"); got != want {
		t.Fatalf("after attach: program %d on xlb0, want %d", got, want)
	}
	firstLink := linkID(t, first)
	if err := first.Attach("xlb0", ModeGeneric); err == nil {
		t.Error("second attach of one datapath: no error")
	}

	// A crash: the process's descriptors close, nothing is unpinned.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if got := attachedProg(t, "xlb0"); got != want {
		t.Fatalf("after the first run died: program %d on xlb0, want its program %d still attached", got, want)
	}

	second := loadFresh()
	if err := second.Attach("xlb0", ModeGeneric); err != nil {
		t.Fatalf("attach over the dead run's link: %v", err)
	}
	want = progID(t, second)
	if got := attachedProg(t, "xlb0"); got != want {
		t.Fatalf("after the restart: program %d on xlb0, want the new run's %d", got, want)
	}
	// The same link, its program swapped: there was no moment without one.
	if got := linkID(t, second); got != firstLink {
		t.Errorf("after the restart: link %d, want the dead run's link %d updated in place", got, firstLink)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}

	// Another mode cannot take the old link over: it is detached first,
	// or the interface would refuse the new attachment.
	third := loadFresh()
	if err := third.Attach("xlb0", ModeAuto); err != nil {
		t.Fatalf("attach in another mode: %v", err)
	}
	want = progID(t, third)
	if got := attachedProg(t, "xlb0"); got != want {
		t.Fatalf("after the mode change: program %d on xlb0, want %d", got, want)
	}
	if _, err := os.Stat(pins + "/" + linkPin(ModeGeneric)); !os.IsNotExist(err) {
		t.Errorf("the generic-mode link is still pinned: %v", err)
	}

	// A clean stop, in the daemon's order: with the pin gone first, closing
	// the descriptor drops the last reference and detaches at once.
	if err := errors.Join(third.Unpin(), third.Close()); err != nil {
		t.Fatal(err)
	}
	if got := attachedProg(t, "xlb0"); got != 0 {
		t.Fatalf("after Unpin and Close: program %d still on xlb0", got)
	}
}
