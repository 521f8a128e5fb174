package balancer

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/xlb-project/xlb/internal/datapath"
)

// fakeDP records transactions and can be told to fail the next one.
type fakeDP struct {
	txns []datapath.Txn
	fail error
}

func (f *fakeDP) Apply(t datapath.Txn) error {
	if f.fail != nil {
		err := f.fail
		f.fail = nil
		return err
	}
	f.txns = append(f.txns, t)
	return nil
}

func (f *fakeDP) last() datapath.Txn { return f.txns[len(f.txns)-1] }

var (
	vip  = datapath.ServiceKey{Addr: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: 6}
	vip2 = datapath.ServiceKey{Addr: netip.MustParseAddr("192.0.2.11"), Port: 80, Proto: 6}
)

func be(last byte, weight uint32) Backend {
	return Backend{
		Addr:   netip.AddrFrom4([4]byte{198, 51, 100, last}),
		Port:   80,
		Weight: weight,
		MAC:    net.HardwareAddr{2, 0, 0, 0, 0, last},
	}
}

func tableIDs(table []uint32) []uint32 {
	ids := slices.Clone(table)
	slices.Sort(ids)
	return slices.Compact(ids)
}

func ids(b *Balancer, key datapath.ServiceKey) map[netip.AddrPort]uint32 {
	out := map[netip.AddrPort]uint32{}
	for _, s := range b.State().Services {
		if s.Key == key {
			for i, be := range s.Backends {
				out[be.Key()] = s.BackendIDs[i]
			}
		}
	}
	return out
}

func TestIDsStableAcrossChanges(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(12, 1)}}}); err != nil {
		t.Fatal(err)
	}
	before := ids(b, vip)
	// Add a backend, change a weight, add a service sharing a server.
	err := b.Apply([]Service{
		{Key: vip, Backends: []Backend{be(13, 1), be(12, 3), be(11, 1)}},
		{Key: vip2, Backends: []Backend{be(11, 1)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	after := ids(b, vip)
	for k, id := range before {
		if after[k] != id {
			t.Errorf("backend %s: id %d became %d", k, id, after[k])
		}
	}
	if ids(b, vip2)[be(11, 1).Key()] == after[be(11, 1).Key()] {
		t.Errorf("a real server shared by two services must have one id per service")
	}
	// Only the new backends' MACs are written again.
	svcID := map[datapath.ServiceKey]uint32{}
	for _, s := range b.State().Services {
		svcID[s.Key] = s.ID
	}
	want := map[uint32]datapath.Backend{
		after[be(13, 1).Key()]:        {MAC: be(13, 1).MAC, Service: svcID[vip]},
		ids(b, vip2)[be(11, 1).Key()]: {MAC: be(11, 1).MAC, Service: svcID[vip2]},
	}
	if diff := cmp.Diff(want, dp.last().Backends); diff != "" {
		t.Errorf("backends written (-want +got):\n%s", diff)
	}
}

func TestWeightZeroDrains(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(12, 1)}}}); err != nil {
		t.Fatal(err)
	}
	id := ids(b, vip)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(12, 0)}}}); err != nil {
		t.Fatal(err)
	}
	txn := dp.last()
	if len(txn.DeleteBackends) != 0 {
		t.Errorf("a drained backend must stay present for its flows, deleted %v", txn.DeleteBackends)
	}
	if len(txn.Services) != 1 {
		t.Fatalf("want one new table, got %d", len(txn.Services))
	}
	if got, want := tableIDs(txn.Services[0].Table), []uint32{id[be(11, 1).Key()]}; !slices.Equal(got, want) {
		t.Errorf("table holds %v, want only %v", got, want)
	}
}

func TestRemovedBackendIsDeletedAfterSwap(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(12, 1)}}}); err != nil {
		t.Fatal(err)
	}
	id := ids(b, vip)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1)}}}); err != nil {
		t.Fatal(err)
	}
	txn := dp.last()
	if diff := cmp.Diff([]uint32{id[be(12, 1).Key()]}, txn.DeleteBackends); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	// A new backend later does not inherit the removed one's id, whose
	// flows must be re-hashed, not handed over.
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(14, 1)}}}); err != nil {
		t.Fatal(err)
	}
	if got := ids(b, vip)[be(14, 1).Key()]; got == id[be(12, 1).Key()] {
		t.Errorf("new backend reused removed backend's id %d", got)
	}
}

func TestRejectedChangeKeepsState(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	first := []Service{{Key: vip, Backends: []Backend{be(11, 1), be(12, 1)}}}
	if err := b.Apply(first); err != nil {
		t.Fatal(err)
	}
	before := b.State()
	dp.fail = errors.New("no memory")
	if err := b.Apply([]Service{{Key: vip2, Backends: []Backend{be(13, 1)}}}); err == nil {
		t.Fatal("want the data path's error")
	}
	if diff := cmp.Diff(before, b.State(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("state changed by a rejected apply (-before +after):\n%s", diff)
	}
	// Re-applying the running state is then a no-op.
	n := len(dp.txns)
	if err := b.Apply(first); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(datapath.Txn{Backends: map[uint32]datapath.Backend{}}, dp.txns[n]); diff != "" {
		t.Errorf("re-applying the same state wrote (-want +got):\n%s", diff)
	}
}

// TestReleasedIDsHeld: a released backend id is not given out again while
// a flow entry naming it may still be followed (the hold), even once the
// rotation comes back to it; after the hold it is.
func TestReleasedIDsHeld(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	now := time.Unix(1_000_000, 0)
	b.now = func() time.Time { return now }
	b.SetIDHold(time.Hour)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(12, 1)}}}); err != nil {
		t.Fatal(err)
	}
	gone := ids(b, vip)[be(12, 1).Key()]
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1)}}}); err != nil {
		t.Fatal(err)
	}
	// The rotation reaches the released id next.
	b.ids.nextBack = gone
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(13, 1)}}}); err != nil {
		t.Fatal(err)
	}
	if got := ids(b, vip)[be(13, 1).Key()]; got == gone {
		t.Errorf("backend id %d given out again within the hold", gone)
	}
	// Past the hold, the id is free again.
	now = now.Add(time.Hour)
	b.ids.nextBack = gone
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(13, 1), be(14, 1)}}}); err != nil {
		t.Fatal(err)
	}
	if got := ids(b, vip)[be(14, 1).Key()]; got != gone {
		t.Errorf("after the hold, the next backend took id %d, want the released %d", got, gone)
	}
}

func TestInvalidInputRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Service
		want string
	}{
		{"duplicate service", []Service{{Key: vip}, {Key: vip}}, "service 192.0.2.10:80/tcp: declared twice"},
		{"duplicate backend", []Service{{Key: vip, Backends: []Backend{be(11, 1), be(11, 2)}}},
			"service 192.0.2.10:80/tcp: backend 198.51.100.11:80: declared twice"},
		{"bad table size", []Service{{Key: vip, TableSize: 1000, Backends: []Backend{be(11, 1)}}},
			"service 192.0.2.10:80/tcp: table size 1000 is not one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := &fakeDP{}
			err := New(dp).Apply(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if len(dp.txns) != 0 {
				t.Errorf("rejected input reached the data path: %+v", dp.txns)
			}
		})
	}
}

func TestAllDrainedKeepsLastTable(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), be(12, 1)}}}); err != nil {
		t.Fatal(err)
	}
	live := b.State().Services[0].Table
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 0), be(12, 0)}}}); err != nil {
		t.Fatal(err)
	}
	st := b.State().Services[0]
	if !st.Installed || !slices.Equal(st.Table, live) {
		t.Errorf("all backends drained: want the last table kept installed")
	}
	if txn := dp.last(); len(txn.Services)+len(txn.DeleteServices)+len(txn.DeleteBackends) != 0 {
		t.Errorf("all backends drained: want no change to the data path, got %+v", txn)
	}
	// A service that never had a table is not installed at all.
	if err := b.Apply([]Service{{Key: vip2, Backends: []Backend{be(11, 0)}}}); err != nil {
		t.Fatal(err)
	}
	if st := b.State().Services[0]; st.Installed {
		t.Errorf("service with no weight ever: installed")
	}
	if txn := dp.last(); !slices.Equal(txn.DeleteServices, []datapath.ServiceKey{vip}) {
		t.Errorf("removed service not deleted: %+v", txn.DeleteServices)
	}
}

func TestUnresolvedBackendTakesNoTraffic(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	unresolved := be(12, 1)
	unresolved.MAC = nil
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{be(11, 1), unresolved}}}); err != nil {
		t.Fatal(err)
	}
	st := b.State().Services[0]
	if st.BackendIDs[1] != 0 {
		t.Errorf("unresolved backend got id %d", st.BackendIDs[1])
	}
	if got := tableIDs(st.Table); !slices.Equal(got, []uint32{st.BackendIDs[0]}) {
		t.Errorf("table holds %v, want only the resolved backend", got)
	}
}

func TestTableSize(t *testing.T) {
	for _, tc := range []struct {
		req  uint32
		n    int
		want uint32
	}{
		{0, 1, 16381}, {0, 163, 16381}, {0, 164, 32749}, {0, 1000, 131071}, {0, 5000, 131071}, {251, 3, 251},
	} {
		got, err := tableSize(tc.req, tc.n)
		if err != nil || got != tc.want {
			t.Errorf("tableSize(%d, %d) = %d, %v; want %d", tc.req, tc.n, got, err, tc.want)
		}
	}
}

// TestNewFromKeepsIDs: a balancer built from the ids another recorded in
// its transactions (what the data path keeps for the next run) gives the
// same backends the same ids, never hands out a departed backend's id to
// a newcomer (its flows may still be in an adopted table), and deletes
// nothing it did not write.
func TestNewFromKeepsIDs(t *testing.T) {
	firstDP := &fakeDP{}
	first := New(firstDP)
	if err := first.Apply([]Service{{Key: vip, Backends: []Backend{be(1, 1), be(2, 1), be(3, 1)}}}); err != nil {
		t.Fatal(err)
	}
	gone := ids(first, vip)[be(3, 1).Key()]
	if err := first.Apply([]Service{{Key: vip, Backends: []Backend{be(1, 1), be(2, 1)}}}); err != nil {
		t.Fatal(err)
	}
	before := ids(first, vip)
	saved := *firstDP.last().IDs
	if diff := cmp.Diff(first.IDs(), saved, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); diff != "" {
		t.Fatalf("IDs recorded by the last transaction (-balancer +recorded):\n%s", diff)
	}

	dp := &fakeDP{}
	second, err := NewFrom(dp, saved)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Apply([]Service{{Key: vip, Backends: []Backend{be(1, 1), be(2, 1), be(4, 1)}}}); err != nil {
		t.Fatal(err)
	}
	after := ids(second, vip)
	for _, last := range []byte{1, 2} {
		k := be(last, 1).Key()
		if after[k] != before[k] {
			t.Errorf("backend %s: id %d, want %d as before", k, after[k], before[k])
		}
	}
	if newID := after[be(4, 1).Key()]; newID == gone || newID == 0 {
		t.Errorf("new backend got id %d; the departed backend had %d", newID, gone)
	}
	txn := dp.last()
	if len(txn.DeleteBackends) != 0 {
		t.Errorf("first transaction deletes backends %v it never wrote", txn.DeleteBackends)
	}
	if len(txn.Backends) != 3 {
		t.Errorf("first transaction writes %d backends, want all 3", len(txn.Backends))
	}
}

func TestNewFromRejects(t *testing.T) {
	ref := func(last byte, id uint32) datapath.BackendID {
		return datapath.BackendID{Service: vip, Backend: be(last, 1).Key(), ID: id}
	}
	type IDs = datapath.IDs
	type BackendIDs = []datapath.BackendID
	for _, tc := range []struct {
		name string
		ids  IDs
		want string
	}{
		{"id 0", IDs{Backends: BackendIDs{ref(1, 0)}}, "backend ids: service 192.0.2.10:80/tcp: backend 198.51.100.1:80: id 0 is out of range (1-65535)"},
		{"id too large", IDs{Backends: BackendIDs{ref(1, datapath.MaxBackends)}}, "is out of range"},
		{"id twice", IDs{Backends: BackendIDs{ref(1, 5), ref(2, 5)}}, "backend 198.51.100.2:80: id 5 is given twice"},
		{"backend twice", IDs{Backends: BackendIDs{ref(1, 5), ref(1, 6)}}, "backend 198.51.100.1:80 is listed twice"},
		{"next out of range", IDs{Next: datapath.MaxBackends}, "backend ids: next"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFrom(&fakeDP{}, tc.ids)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestTunnelBackend: a tunnel backend needs no MAC; it is written once,
// again when its tunnel changes (a new outer source after a route
// change), and not while it stays the same.
func TestTunnelBackend(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	tun := func(src string) Backend {
		return Backend{Addr: netip.MustParseAddr("203.0.113.20"), Port: 80, Weight: 1,
			Tunnel: &datapath.Tunnel{Encap: datapath.EncapIPIP, Dst: netip.MustParseAddr("203.0.113.20"), Src: netip.MustParseAddr(src)}}
	}
	apply := func(bs ...Backend) datapath.Txn {
		t.Helper()
		if err := b.Apply([]Service{{Key: vip, Backends: bs}}); err != nil {
			t.Fatal(err)
		}
		return dp.last()
	}
	txn := apply(be(11, 1), tun("198.51.100.2"))
	id := ids(b, vip)[tun("198.51.100.2").Key()]
	if got := txn.Backends[id].Tunnel; got == nil || got.Src != netip.MustParseAddr("198.51.100.2") || txn.Backends[id].MAC != nil {
		t.Fatalf("tunnel backend written as %+v", txn.Backends[id])
	}
	if got := tableIDs(b.State().Services[0].Table); !slices.Contains(got, id) {
		t.Errorf("table ids %v lack the tunnel backend %d", got, id)
	}
	if txn := apply(be(11, 1), tun("198.51.100.2")); len(txn.Backends) != 0 {
		t.Errorf("unchanged backends rewritten: %v", txn.Backends)
	}
	if txn := apply(be(11, 1), tun("198.51.100.3")); txn.Backends[id].Tunnel == nil || txn.Backends[id].Tunnel.Src != netip.MustParseAddr("198.51.100.3") {
		t.Errorf("new outer source not written: %v", txn.Backends)
	}
	bad := tun("198.51.100.2")
	bad.MAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{bad}}}); err == nil || !strings.Contains(err.Error(), "both a MAC and a tunnel") {
		t.Errorf("backend with a MAC and a tunnel: %v", err)
	}
}

// TestVLANChangeSwitchesService: a service's VLAN reaches the data path,
// and a change of it alone is written again; no change writes nothing.
func TestVLANChangeSwitchesService(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	backends := []Backend{be(11, 1), be(12, 1)}
	vlanOf := func() []uint16 {
		var out []uint16
		for _, st := range dp.last().Services {
			out = append(out, st.Service.VLAN)
		}
		return out
	}
	for _, step := range []struct {
		vlan uint16
		want []uint16 // VLANs of the services written
	}{{100, []uint16{100}}, {100, nil}, {200, []uint16{200}}, {0, []uint16{0}}} {
		if err := b.Apply([]Service{{Key: vip, VLAN: step.vlan, Backends: backends}}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(step.want, vlanOf()); diff != "" {
			t.Errorf("vlan %d: services written (-want +got):\n%s", step.vlan, diff)
		}
	}
}

// TestIfindexChangeRewritesBackend: a real server that moves to another
// interface (or whose interface came back with a new index) is written
// again with its id kept; nothing else is.
func TestIfindexChangeRewritesBackend(t *testing.T) {
	dp := &fakeDP{}
	b := New(dp)
	a, c := be(11, 1), be(12, 1)
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{a, c}}}); err != nil {
		t.Fatal(err)
	}
	before := ids(b, vip)
	a.Ifindex = 3
	if err := b.Apply([]Service{{Key: vip, Backends: []Backend{a, c}}}); err != nil {
		t.Fatal(err)
	}
	svcID := b.State().Services[0].ID
	want := map[uint32]datapath.Backend{before[a.Key()]: {MAC: a.MAC, Service: svcID, Ifindex: 3}}
	if diff := cmp.Diff(want, dp.last().Backends); diff != "" {
		t.Errorf("backends written (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, ids(b, vip)); diff != "" {
		t.Errorf("ids changed (-before +after):\n%s", diff)
	}
	if len(dp.last().Services) != 0 {
		t.Errorf("an interface change rebuilt %d tables, want none", len(dp.last().Services))
	}
}
