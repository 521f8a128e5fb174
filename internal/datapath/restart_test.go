package datapath

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"
)

// recordedIDs are the ids a run records beside stdSetup's backends.
func recordedIDs() IDs {
	svc := ServiceKey{Addr: vip4, Port: 80, Proto: ipProtoTCP}
	ids := IDs{Next: 42}
	for i, id := range stdBackends {
		be := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}), 80)
		ids.Backends = append(ids.Backends, BackendID{Service: svc, Backend: be, ID: id})
	}
	return ids
}

var cmpIDs = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// crashWithFlow runs a first datapath that records ids and places one flow,
// and closes it without unpinning, as a crash does.
func crashWithFlow(t *testing.T, pins string) (pkt, FlowEntry) {
	t.Helper()
	first := load(t, pins, Options{})
	txn := stdSetup()
	ids := recordedIDs()
	txn.IDs = &ids
	apply(t, first, txn)
	f := tcp4(40000, thSYN)
	if v, _ := run(t, first, f.build()); v != verdictTX {
		t.Fatalf("SYN: verdict %d, want XDP_TX", v)
	}
	want, ok, err := first.LookupFlow(f.flow())
	if err != nil || !ok {
		t.Fatalf("flow after the SYN: found %v, %v", ok, err)
	}
	if err := first.Pin(); err != nil { // what a run that served has pinned
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	return f, want
}

// TestRestartAdoptsFlowsWithTheirIDs: the flow table is adopted together
// with the record of its backend ids, or neither is.
func TestRestartAdoptsFlowsWithTheirIDs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		prepare func(t *testing.T, pins string)
		kept    bool
	}{
		{name: "both adopted", opts: Options{KeepFlows: true}, kept: true},
		{name: "without KeepFlows neither", opts: Options{}},
		{name: "flows of another size: copied", opts: Options{KeepFlows: true, FlowTableSize: 8192}, kept: true},
		{
			name: "flows without a record of their ids: neither",
			opts: Options{KeepFlows: true},
			prepare: func(t *testing.T, pins string) {
				if err := os.Remove(filepath.Join(pins, lbMapBackendIds)); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pins := mountBPFFS(t)
			f, want := crashWithFlow(t, pins)
			if tc.prepare != nil {
				tc.prepare(t, pins)
			}
			d := load(t, pins, tc.opts)
			defer d.Close()
			if err := d.Pin(); err != nil {
				t.Fatal(err)
			}
			got, ok, err := d.LookupFlow(f.flow())
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.kept {
				t.Fatalf("flow found %v, want %v", ok, tc.kept)
			}
			if ok && got.Backend != want.Backend {
				t.Errorf("flow on backend %d, want %d", got.Backend, want.Backend)
			}
			wantIDs := IDs{}
			if tc.kept {
				wantIDs = recordedIDs()
			}
			if diff := cmp.Diff(wantIDs, d.IDs(), cmpIDs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("adopted ids (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadChangesNothing: Load leaves every pin as it found it; only Pin
// replaces them, each with this run's map.
func TestLoadChangesNothing(t *testing.T) {
	pins := mountBPFFS(t)
	crashWithFlow(t, pins)
	before := pinInodes(t, pins)
	d := load(t, pins, Options{KeepFlows: true})
	if diff := cmp.Diff(before, pinInodes(t, pins)); diff != "" {
		t.Errorf("pins after Load (-before +after):\n%s", diff)
	}
	if err := d.Pin(); err != nil {
		t.Fatal(err)
	}
	after := pinInodes(t, pins)
	for name, ino := range before {
		if after[name] == ino || after[name] == 0 {
			t.Errorf("pin %s after Pin: inode %d, want a new pin in place of %d", name, after[name], ino)
		}
	}
	d.Close()
}

func pinInodes(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, name := range mapNames {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, name), &st); err != nil {
			t.Fatal(err)
		}
		out[name] = st.Ino
	}
	return out
}

// TestIncompatibleFlowTable: a pinned flow table this build cannot read is
// refused while a program may still use it (its XDP link is pinned), and
// replaced by an empty one otherwise.
func TestIncompatibleFlowTable(t *testing.T) {
	pins := mountBPFFS(t)
	crashWithFlow(t, pins)
	flows := filepath.Join(pins, lbMapFlows4)
	if err := os.Remove(flows); err != nil {
		t.Fatal(err)
	}
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 16, MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Pin(flows); err != nil {
		t.Fatal(err)
	}
	before := pinInodes(t, pins)

	d := load(t, pins, Options{KeepFlows: true})
	if _, ok, _ := d.LookupFlow(tcp4(40000, thSYN).flow()); ok {
		t.Error("without a pinned link: a flow found in a table of another layout")
	}
	d.Close()

	// Any pinned object stands for the link here: Load only asks whether
	// one is there.
	stand, err := other.Clone() // Pin moves a pinned map's pin
	if err != nil {
		t.Fatal(err)
	}
	defer stand.Close()
	if err := stand.Pin(filepath.Join(pins, linkPin(ModeNative))); err != nil {
		t.Fatal(err)
	}
	_, err = Load(Options{PinDir: pins, KeepFlows: true, FlowTableSize: 4096})
	var ie *IncompatibleError
	if !errors.As(err, &ie) || ie.Map != lbMapFlows4 {
		t.Fatalf("with a pinned link: %v, want an *IncompatibleError for the flows map", err)
	}
	if diff := cmp.Diff(before, pinInodes(t, pins)); diff != "" {
		t.Errorf("pins after the refused load (-before +after):\n%s", diff)
	}
}

// TestRecordFollowsTransactions: a transaction that releases an id drops
// it from the record, one without IDs leaves the record alone, and a
// rejected one records nothing.
func TestRecordFollowsTransactions(t *testing.T) {
	d := newDatapath(t, Options{})
	txn := stdSetup()
	ids := recordedIDs()
	txn.IDs = &ids
	apply(t, d, txn)

	fewer := IDs{Next: 43, Backends: ids.Backends[1:]}
	apply(t, d, Txn{IDs: &fewer})
	if diff := cmp.Diff(fewer, d.IDs(), cmpIDs); diff != "" {
		t.Errorf("after releasing an id (-want +got):\n%s", diff)
	}
	apply(t, d, Txn{})
	if diff := cmp.Diff(fewer, d.IDs(), cmpIDs); diff != "" {
		t.Errorf("after a transaction without ids (-want +got):\n%s", diff)
	}
	bad := IDs{Next: 44, Backends: append(fewer.Backends, BackendID{Service: fewer.Backends[0].Service, Backend: fewer.Backends[0].Backend, ID: MaxBackends})}
	if err := d.Apply(Txn{IDs: &bad}); err == nil {
		t.Fatal("ids out of range: no error")
	}
	if diff := cmp.Diff(fewer, d.IDs(), cmpIDs); diff != "" {
		t.Errorf("after a rejected transaction (-want +got):\n%s", diff)
	}
	// What is recorded is what the map holds, not only what d remembers.
	if err := d.readIDs(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fewer, d.IDs(), cmpIDs); diff != "" {
		t.Errorf("read back from the map (-want +got):\n%s", diff)
	}
}

// TestMigrateLegacyIDs: the JSON file of an xlb from before the
// backend_ids map stands in for it once, so upgrading keeps the flows.
func TestMigrateLegacyIDs(t *testing.T) {
	pins := mountBPFFS(t)
	f, want := crashWithFlow(t, pins)
	if err := os.Remove(filepath.Join(pins, lbMapBackendIds)); err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(t.TempDir(), "backend-ids.json")
	body := `{"next":42,"backends":[` +
		`{"service":{"Addr":"192.0.2.10","Port":80,"Proto":6},"backend":"198.51.100.10:80","id":1},` +
		`{"service":{"Addr":"192.0.2.10","Port":80,"Proto":6},"backend":"198.51.100.11:80","id":2},` +
		`{"service":{"Addr":"192.0.2.10","Port":80,"Proto":6},"backend":"198.51.100.12:80","id":3}]}`
	if err := os.WriteFile(legacy, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	d := load(t, pins, Options{KeepFlows: true, LegacyIDs: legacy})
	defer d.Close()
	if _, err := os.Stat(legacy); err != nil {
		t.Errorf("the legacy file is gone before Pin: %v", err)
	}
	if err := d.Pin(); err != nil {
		t.Fatal(err)
	}
	got, ok, err := d.LookupFlow(f.flow())
	if err != nil || !ok || got.Backend != want.Backend {
		t.Fatalf("flow after the upgrade: %+v, found %v, %v; want backend %d", got, ok, err, want.Backend)
	}
	wantIDs := recordedIDs()
	wantIDs.Backends = wantIDs.Backends[:3]
	if diff := cmp.Diff(wantIDs, d.IDs(), cmpIDs); diff != "" {
		t.Errorf("migrated ids (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(legacy); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the legacy file is still there: %v", err)
	}
}

// TestPinDirLocked: while one Datapath holds a pin directory, loading
// another on it fails with the holder's pid and changes nothing; once the
// first is closed, the directory is free.
func TestPinDirLocked(t *testing.T) {
	pins := mountBPFFS(t)
	first := load(t, pins, Options{})
	txn := stdSetup()
	ids := recordedIDs()
	txn.IDs = &ids
	apply(t, first, txn)

	_, err := Load(Options{PinDir: pins, FlowTableSize: 4096})
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second load: %v, want a *LockedError", err)
	}
	if le.PID != os.Getpid() {
		t.Errorf("lock holder: pid %d, want %d", le.PID, os.Getpid())
	}
	// The refused load removed no pin: the first one's record is intact.
	if err := first.readIDs(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids, first.IDs(), cmpIDs); diff != "" {
		t.Errorf("ids after the refused load (-want +got):\n%s", diff)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := load(t, pins, Options{KeepFlows: true})
	second.Close()
}

// TestPinDirNotEmpty: a pin directory that is not on a bpffs and holds
// files is refused, not hidden under a new bpffs.
func TestPinDirNotEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Options{PinDir: dir})
	if err == nil || !strings.Contains(err.Error(), "not on a bpffs and not empty") {
		t.Fatalf("Load on a non-empty directory: %v", err)
	}
}

// TestSetMAC: after SetMAC the program takes frames to the new address,
// with it as their source, and passes those to the old one as another
// host's; known flows keep their backends.
func TestSetMAC(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, stdSetup())
	syn := tcp4(40000, thSYN)
	_, out := run(t, d, syn.build())
	backend := out[:6]
	newMAC := macAddr{0x02, 0x1b, 0, 0, 0, 0x99}
	if err := d.SetMAC(newMAC[:]); err != nil {
		t.Fatal(err)
	}
	ack := syn.with(func(p *pkt) { p.flags, p.dst = thACK, newMAC })
	v, out := run(t, d, ack.build())
	if v != verdictTX {
		t.Fatalf("a frame to the new MAC: verdict %d, want XDP_TX", v)
	}
	if !bytes.Equal(out[:6], backend) || !bytes.Equal(out[6:12], newMAC[:]) {
		t.Errorf("a frame to the new MAC went out %x -> %x, want %x -> %x", out[6:12], out[:6], newMAC, backend)
	}
	before := counters(t, d)[CounterPassOtherHost]
	if v, _ := run(t, d, syn.with(func(p *pkt) { p.flags = thACK }).build()); v != verdictPass {
		t.Errorf("a frame to the old MAC: verdict %d, want XDP_PASS", v)
	}
	if got := counters(t, d)[CounterPassOtherHost]; got != before+1 {
		t.Errorf("pass_other_host %d, want %d", got, before+1)
	}
}

// TestRestartForgetsFragments: the fragment records are not adopted:
// a datagram whose first fragment the earlier run forwarded loses its
// later ones to the kernel, while its flow is kept; the pin is this
// run's empty table once Pin has run.
func TestRestartForgetsFragments(t *testing.T) {
	pins := mountBPFFS(t)
	first := load(t, pins, Options{})
	txn := stdSetup()
	ids := recordedIDs()
	txn.IDs = &ids
	apply(t, first, txn)
	frags := udp4(40100).with(func(p *pkt) { p.payload = make([]byte, 100) }).fragments(64, 0x3001)
	if v, _ := run(t, first, frags[0].build()); v != verdictTX {
		t.Fatalf("first fragment: verdict %d, want XDP_TX", v)
	}
	if err := first.Pin(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	d := load(t, pins, Options{KeepFlows: true})
	defer d.Close()
	apply(t, d, txn)
	if err := d.Pin(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.LookupFlow(frags[0].flow()); err != nil || !ok {
		t.Fatalf("the datagram's flow after the restart: found %v, %v", ok, err)
	}
	step{p: frags[1], verdict: verdictPass, state: FlowUDP, backend: 2, svc: svcUDP4,
		counters: map[Counter]uint64{CounterPassFragNoFirst: 1}}.check(t, d, stdServices, stdBackends)
	m, err := ebpf.LoadPinnedMap(filepath.Join(pins, lbMapFrags), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var k lbFragKey
	n := 0
	it := m.Iterate()
	for it.Next(&k, new(lbFragPorts)) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("pinned fragment table holds %d records, want the new run's empty one", n)
	}
}
