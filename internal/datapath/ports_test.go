package datapath

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

const verdictRedirect = 4 // XDP_REDIRECT

// runOn passes frame through prog as if it came in on interface ingress.
func runOn(t *testing.T, prog *ebpf.Program, ingress int, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	ctx := xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ingress)}
	verdict, err := prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out, Context: ctx})
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return verdict, out[:len(frame)]
}

func ifaceOf(t *testing.T, name string) *net.Interface {
	t.Helper()
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return ifi
}

// twoArms is a data path attached to xlb0 (clients) and xlb1 (a second
// segment), generic mode, in a namespace of the test's own.
func twoArms(t *testing.T) (d *Datapath, arm0, arm1 *net.Interface) {
	t.Helper()
	inTestNetns(t)
	d = load(t, mountBPFFS(t), Options{})
	t.Cleanup(func() { d.Close() })
	if err := d.Attach("xlb0", ModeGeneric, "xlb1"); err != nil {
		t.Fatal(err)
	}
	return d, ifaceOf(t, "xlb0"), ifaceOf(t, "xlb1")
}

// TestXmitVerdicts: a backend on the interface the frame came in on (or
// on none named) is reached by XDP_TX, one on the other arm by
// XDP_REDIRECT with that arm's MAC as source, one on an interface xlb does
// not serve is passed untouched; the 802.1Q tag stays.
func TestXmitVerdicts(t *testing.T) {
	d, arm0, arm1 := twoArms(t)
	mac0, mac1 := macAddr(arm0.HardwareAddr), macAddr(arm1.HardwareAddr)
	arm1Prog := d.port("xlb1").objs.XlbXdp
	tests := []struct {
		name    string
		prog    *ebpf.Program
		ingress int
		to      macAddr // the frame's destination: the ingress interface's MAC
		ifindex uint32  // the backend's
		tagged  bool
		verdict uint32
		src     macAddr // the forwarded frame's source
		counter Counter // moved by a passed frame
	}{
		{name: "same arm, by index", prog: d.objs.XlbXdp, ingress: arm0.Index, to: macLB, ifindex: uint32(arm0.Index), verdict: verdictTX, src: macLB},
		{name: "same arm, no index", prog: d.objs.XlbXdp, ingress: arm0.Index, to: macLB, ifindex: 0, verdict: verdictTX, src: macLB},
		{name: "other arm", prog: d.objs.XlbXdp, ingress: arm0.Index, to: macLB, ifindex: uint32(arm1.Index), verdict: verdictRedirect, src: mac1},
		{name: "other arm, 802.1Q", prog: d.objs.XlbXdp, ingress: arm0.Index, to: macLB, ifindex: uint32(arm1.Index), tagged: true, verdict: verdictRedirect, src: mac1},
		{name: "second arm's program to the first arm", prog: arm1Prog, ingress: arm1.Index, to: mac1, ifindex: uint32(arm0.Index), verdict: verdictRedirect, src: mac0},
		{name: "second arm's program, same arm", prog: arm1Prog, ingress: arm1.Index, to: mac1, ifindex: uint32(arm1.Index), verdict: verdictTX, src: mac1},
		{name: "interface not served", prog: d.objs.XlbXdp, ingress: arm0.Index, to: macLB, ifindex: 9999, verdict: verdictPass, counter: CounterPassNoTxPort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearFlows(t, d)
			txn := stdSetup()
			be := txn.Backends[1]
			be.Ifindex = tc.ifindex
			txn.Backends[1] = be
			apply(t, d, txn)
			p := tcp4(43000, thSYN).with(func(p *pkt) { p.dst = tc.to })
			if tc.tagged {
				p = p.with(tagged8021Q)
			}
			frame := p.build()
			c0 := counters(t, d)
			verdict, out := runOn(t, tc.prog, tc.ingress, frame)
			if verdict != tc.verdict {
				t.Errorf("verdict %d, want %d", verdict, tc.verdict)
			}
			want := frame
			if tc.verdict != verdictPass {
				want = p.forwarded(tc.src, backendMAC(1))
			}
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("frame out (-want +got):\n%s", diff)
			}
			wantCounters := map[Counter]uint64{CounterFlowNew: 1}
			if tc.counter != 0 {
				wantCounters[tc.counter] = 1
			}
			if diff := cmp.Diff(wantCounters, counterDelta(c0, counters(t, d))); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPortsLifecycle: each interface has its program and its link pinned
// under a name of its own; a restart takes each link over in place; an
// interface created again gets its program back under its new index; a
// run without the second interface detaches it; Unpin and Close detach
// everything.
func TestPortsLifecycle(t *testing.T) {
	d, arm0, arm1 := twoArms(t)
	pins := d.pinDir
	if err := d.Pin(); err != nil {
		t.Fatal(err)
	}
	wantPins := []string{"xdp_link_generic", "xdp_link_generic@xlb1"}
	if diff := cmp.Diff(wantPins, linkPins(t, pins)); diff != "" {
		t.Errorf("link pins (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[uint32]uint32{uint32(arm0.Index): uint32(arm0.Index), uint32(arm1.Index): uint32(arm1.Index)}, txPorts(t, d)); diff != "" {
		t.Errorf("tx_ports (-want +got):\n%s", diff)
	}
	if err := d.Attach("xlb0", ModeGeneric, "xlb1"); err == nil {
		t.Error("second Attach: no error")
	}
	link1 := d.port("xlb1").link
	info, err := link1.Info()
	if err != nil {
		t.Fatal(err)
	}
	firstLink := info.ID
	prog1 := attachedProg(t, "xlb1")
	if prog1 == 0 || prog1 == attachedProg(t, "xlb0") {
		t.Fatalf("programs: xlb0 %d, xlb1 %d; want one each", attachedProg(t, "xlb0"), prog1)
	}

	// A crash, then a restart: each link gets the new program in place.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if attachedProg(t, "xlb1") != prog1 {
		t.Fatal("the dead run's program left xlb1")
	}
	d2 := load(t, pins, Options{})
	t.Cleanup(func() { d2.Close() })
	if err := d2.Attach("xlb0", ModeGeneric, "xlb1"); err != nil {
		t.Fatal(err)
	}
	info, err = d2.port("xlb1").link.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != firstLink {
		t.Errorf("xlb1's link after the restart: %d, want the dead run's %d updated in place", info.ID, firstLink)
	}

	// xlb1 deleted and created again: a new index, its program back.
	if err := netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xlb0"}}); err != nil {
		t.Fatal(err)
	}
	inTestVeth(t)
	arm0, arm1b := ifaceOf(t, "xlb0"), ifaceOf(t, "xlb1")
	for _, name := range []string{"xlb0", "xlb1"} {
		if err := d2.Port(name).Reattach(); err != nil {
			t.Fatalf("reattach %s: %v", name, err)
		}
	}
	if attachedProg(t, "xlb1") == 0 || attachedProg(t, "xlb0") == 0 {
		t.Error("a reattached interface has no program")
	}
	if diff := cmp.Diff(map[uint32]uint32{uint32(arm0.Index): uint32(arm0.Index), uint32(arm1b.Index): uint32(arm1b.Index)}, txPorts(t, d2)); diff != "" {
		t.Errorf("tx_ports after the interfaces came back (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"xlb0": arm0.Index, "xlb1": arm1b.Index}, d2.Interfaces()); diff != "" {
		t.Errorf("Interfaces (-want +got):\n%s", diff)
	}
	// The old index stays in ifaces until the next Apply moves the
	// backends: their frames are dropped, not passed to the kernel.
	var v lbXlbIface
	if err := d2.objs.Ifaces.Lookup(uint32(arm1.Index), &v); err != nil {
		t.Errorf("ifaces forgot xlb1's old index before an Apply: %v", err)
	}
	apply(t, d2, Txn{})
	if err := d2.objs.Ifaces.Lookup(uint32(arm1.Index), &v); err == nil {
		t.Errorf("ifaces still holds xlb1's old index after an Apply")
	}
	// The new links are pinned: a crash now keeps both programs.
	if diff := cmp.Diff(wantPins, linkPins(t, pins)); diff != "" {
		t.Errorf("link pins after the interfaces came back (-want +got):\n%s", diff)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}

	// A run on xlb0 alone detaches xlb1's program once it pins.
	d3 := load(t, pins, Options{})
	t.Cleanup(func() { d3.Close() })
	if err := d3.Attach("xlb0", ModeGeneric); err != nil {
		t.Fatal(err)
	}
	if err := d3.Pin(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"xdp_link_generic"}, linkPins(t, pins)); diff != "" {
		t.Errorf("link pins of a one-interface run (-want +got):\n%s", diff)
	}
	if got := attachedProg(t, "xlb1"); got != 0 {
		t.Errorf("xlb1 still has program %d after a run without it", got)
	}
	if err := d3.Close(); err != nil {
		t.Fatal(err)
	}
	d4 := load(t, pins, Options{})
	t.Cleanup(func() { d4.Close() })
	if err := d4.Attach("xlb0", ModeGeneric, "xlb1"); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(d4.Unpin(), d4.Close()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"xlb0", "xlb1"} {
		if got := attachedProg(t, name); got != 0 {
			t.Errorf("after Unpin and Close: program %d still on %s", got, name)
		}
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		t.Errorf("pin directory left: %v", err)
	}
}

// TestPortSuffix: interface names become pin names bpffs takes (no dots),
// and two names never share one.
func TestPortSuffix(t *testing.T) {
	got := map[string]string{}
	for _, n := range []string{"", "eth1", "eth0.100", "eth0%2e100", "a.b.c"} {
		got[n] = portSuffix(n)
	}
	want := map[string]string{"": "", "eth1": "@eth1", "eth0.100": "@eth0%2e100", "eth0%2e100": "@eth0%252e100", "a.b.c": "@a%2eb%2ec"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func linkPins(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, linkPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	slices.Sort(out)
	return out
}

func txPorts(t *testing.T, d *Datapath) map[uint32]uint32 {
	t.Helper()
	out := map[uint32]uint32{}
	var k, v uint32
	it := d.objs.TxPorts.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMACChangeWindow: a frame to the interface's new MAC, which the
// program's constant does not know yet, is forwarded once the loader has
// written that MAC to ifaces (SetMAC does so before it loads the program
// that has it), and passed as another host's before.
func TestMACChangeWindow(t *testing.T) {
	n := newTunnelNS(t)
	d := newDatapath(t, Options{MAC: macLB[:]})
	apply(t, d, stdSetup())
	newMAC := macAddr{0x02, 0, 0, 0, 0xaa, 0x01}
	frame := tcp4(45000, thSYN).with(func(p *pkt) { p.dst = newMAC }).build()
	for _, tc := range []struct {
		name    string
		write   bool
		verdict uint32
		counter Counter
	}{
		{"before the loader knows the new MAC", false, verdictPass, CounterPassOtherHost},
		{"once ifaces has it", true, verdictTX, CounterFlowNew},
	} {
		if tc.write {
			if err := d.addTxPort(n.lbIdx, newMAC[:]); err != nil {
				t.Fatal(err)
			}
		}
		before := counters(t, d)
		verdict, _, err := runIn(d, n.lbIdx, frame)
		if err != nil {
			t.Fatal(err)
		}
		if got := counterDelta(before, counters(t, d)); verdict != tc.verdict || got[tc.counter] != 1 {
			t.Errorf("%s: verdict %d, counters %v; want %d and %s", tc.name, verdict, got, tc.verdict, tc.counter)
		}
	}
	// Another interface's MAC is still another host's.
	other := tcp4(45001, thSYN).with(func(p *pkt) { p.dst = macArm }).build()
	if verdict, _, _ := runIn(d, n.lbIdx, other); verdict != verdictPass {
		t.Errorf("frame to another MAC: verdict %d, want XDP_PASS", verdict)
	}
}
