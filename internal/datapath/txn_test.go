package datapath

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
)

// mapState is everything a rejected transaction must leave as it was.
type mapState struct {
	Services []ServiceInfo
	Backends map[uint32][6]byte
	Slots    []uint32
	Flows    []FlowEntry
}

func stateOf(t *testing.T, d *Datapath) mapState {
	t.Helper()
	return mapState{Services: sortedServices(t, d), Backends: presentBackends(t, d), Slots: maglevSlots(t, d), Flows: allFlows(t, d)}
}

// presentBackends is Backends() read in batches: Backends() costs a
// syscall per array entry (65,536 of them), too slow to call around
// every case. TestPresentBackends holds the two to the same answer.
func presentBackends(t *testing.T, d *Datapath) map[uint32][6]byte {
	t.Helper()
	out := map[uint32][6]byte{}
	var cursor ebpf.MapBatchCursor
	keys := make([]uint32, 8192)
	vals := make([]lbBackend, 8192)
	for {
		n, err := d.objs.Backends.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if vals[i].Flags&backendPresent != 0 {
				out[keys[i]] = vals[i].Mac
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestPresentBackends(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, Txn{Backends: backendsTxn(1, 7, 65535)})
	apply(t, d, Txn{DeleteBackends: []uint32{7}})
	want := map[uint32][6]byte{1: backendMAC(1), 65535: backendMAC(65535)}
	if diff := cmp.Diff(want, backends(t, d)); diff != "" {
		t.Errorf("Backends (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, presentBackends(t, d)); diff != "" {
		t.Errorf("presentBackends (-want +got):\n%s", diff)
	}
}

func TestApplyRejected(t *testing.T) {
	d := newDatapath(t, Options{})
	dns6 := ServiceKey{Addr: vip6, Port: 53, Proto: ipProtoUDP}
	apply(t, d, Txn{
		Backends: mergeBackends(backendsOf(1, 1, 2), backendsOf(2, 3), backendsOf(3, 5, 6)),
		Services: []ServiceTable{
			{Key: web4, Service: Service{ID: 1}, Table: patterned(251, 1, 2)},
			{Key: dns6, Service: Service{ID: 2, HashSource: true}, Table: patterned(7, 3)},
		},
	})
	run(t, d, tcp4(50000, thSYN).build()) // a flow, which must survive too

	other := ServiceKey{Addr: netip.MustParseAddr("192.0.2.20"), Port: 80, Proto: ipProtoTCP}
	svc := func(k ServiceKey, id uint32, table []uint32) []ServiceTable {
		return []ServiceTable{{Key: k, Service: Service{ID: id}, Table: table}}
	}
	const pre = "datapath: transaction rejected: "
	tests := []struct {
		name string
		txn  Txn
		want string
	}{
		{"backend id 0", Txn{Backends: backendsTxn(0)},
			"backend id 0: out of range [1, 65536)"},
		{"backend id too large", Txn{Backends: backendsTxn(65536)},
			"backend id 65536: out of range [1, 65536)"},
		{"short MAC", Txn{Backends: map[uint32]Backend{4: {MAC: net.HardwareAddr{2, 0, 0, 0, 4}, Service: 1}}},
			`backend id 4: MAC "02:00:00:00:04" is not an Ethernet address`},
		{"nil MAC", Txn{Backends: map[uint32]Backend{4: {Service: 1}}},
			`backend id 4: MAC "" is not an Ethernet address`},
		{"backend without a service", Txn{Backends: backendsOf(0, 4)},
			`backend id 4: service id 0 out of range [1, 4096)`},
		{"backend of a service id too large", Txn{Backends: backendsOf(4096, 4)},
			`backend id 4: service id 4096 out of range [1, 4096)`},
		{"present backend given to another service", Txn{Backends: backendsOf(2, 1)},
			`backend id 1: belongs to service id 1, not 2: delete it before giving it out again`},
		{"table names another service's backend", Txn{Services: svc(other, 3, []uint32{5, 1})},
			"service 192.0.2.20:80/tcp: table names backend id 1, which is service id 1's"},
		{"delete backend id 0", Txn{DeleteBackends: []uint32{0}},
			"backend id 0: out of range [1, 65536)"},
		{"backend set and deleted", Txn{Backends: backendsTxn(4), DeleteBackends: []uint32{4}},
			"backend id 4: both set and deleted"},
		{"protocol", Txn{Services: svc(ServiceKey{Addr: vip4, Port: 80, Proto: 1}, 3, []uint32{5})},
			"service 192.0.2.10:80/proto1: protocol must be tcp or udp"},
		{"no address", Txn{Services: svc(ServiceKey{Port: 80, Proto: ipProtoTCP}, 3, []uint32{5})},
			"service invalid AddrPort/tcp: invalid address"},
		{"zoned address", Txn{Services: svc(ServiceKey{Addr: netip.MustParseAddr("fe80::1%eth0"), Port: 80, Proto: ipProtoTCP}, 3, []uint32{5})},
			"service [fe80::1%eth0]:80/tcp: invalid address"},
		{"service id 0", Txn{Services: svc(other, 0, []uint32{1})},
			"service 192.0.2.20:80/tcp: id 0 out of range [1, 4096)\n" +
				"service 192.0.2.20:80/tcp: table names backend id 1, which is service id 1's"},
		{"service id too large", Txn{Services: svc(other, 4096, []uint32{1})},
			"service 192.0.2.20:80/tcp: id 4096 out of range [1, 4096)\n" +
				"service 192.0.2.20:80/tcp: table names backend id 1, which is service id 1's"},
		{"empty table", Txn{Services: svc(other, 3, nil)},
			"service 192.0.2.20:80/tcp: table size 0 out of range [1, 131071]"},
		{"table too large", Txn{Services: svc(other, 3, patterned(131072, 5))},
			"service 192.0.2.20:80/tcp: table size 131072 out of range [1, 131071]"},
		{"table names an absent backend", Txn{Services: svc(other, 3, []uint32{5, 9, 9})},
			"service 192.0.2.20:80/tcp: table names backend id 9, which is not present"},
		{"table names backend 0", Txn{Services: svc(other, 3, []uint32{0})},
			"service 192.0.2.20:80/tcp: table names backend id 0, which is not present"},
		{"table names a backend deleted with it", Txn{Services: svc(web4, 1, []uint32{1, 2}), DeleteBackends: []uint32{2}},
			"service 192.0.2.10:80/tcp: table names backend id 2, which is not present"},
		{"service set twice", Txn{Services: append(svc(other, 3, []uint32{5}), svc(other, 3, []uint32{6})...)},
			"service 192.0.2.20:80/tcp: set twice or both set and deleted"},
		{"service set and deleted", Txn{Services: svc(web4, 1, []uint32{1}), DeleteServices: []ServiceKey{web4}},
			"service 192.0.2.10:80/tcp: set twice or both set and deleted"},
		{"delete an unknown service", Txn{DeleteServices: []ServiceKey{other}},
			"delete service 192.0.2.20:80/tcp: no such service"},
		{"delete an invalid key", Txn{DeleteServices: []ServiceKey{{Addr: vip4, Port: 80, Proto: 132}}},
			"delete service 192.0.2.10:80/proto132: protocol must be tcp or udp"},
		{"a staying table names a deleted backend", Txn{DeleteBackends: []uint32{3}},
			"service [2001:db8::10]:53/udp: its table still names backend id 3, which is deleted"},
		{"service id taken", Txn{Services: svc(other, 2, []uint32{3})},
			"service id 2: used by [192.0.2.20:80/tcp [2001:db8::10]:53/udp]"},
		{"several problems at once", Txn{DeleteBackends: []uint32{0}, Services: svc(other, 0, nil)},
			"backend id 0: out of range [1, 65536)\n" +
				"service 192.0.2.20:80/tcp: id 0 out of range [1, 4096)\n" +
				"service 192.0.2.20:80/tcp: table size 0 out of range [1, 131071]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, c0 := stateOf(t, d), counters(t, d)
			err := d.Apply(tc.txn)
			if err == nil {
				t.Fatal("accepted")
			}
			if diff := cmp.Diff(pre+tc.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, stateOf(t, d), equateAddr); diff != "" {
				t.Errorf("maps changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(c0, counters(t, d)); diff != "" {
				t.Errorf("counters changed (-before +after):\n%s", diff)
			}
		})
	}
	// The state the rejections left still takes a valid transaction.
	apply(t, d, Txn{Backends: backendsOf(3, 4), Services: svc(other, 3, []uint32{4})})
	step{p: tcp4(50001, thSYN).with(func(p *pkt) { p.dstIP = other.Addr }), verdict: verdictTX, backend: 4, svc: 3,
		state: FlowSYN, counters: newFlow()}.check(t, d, []uint32{3}, []uint32{4})
}

// TestApplyChanges: accepted transactions read back through Services and
// Backends, and the data path follows them.
func TestApplyChanges(t *testing.T) {
	d := newDatapath(t, Options{})
	dns6 := ServiceKey{Addr: vip6, Port: 53, Proto: ipProtoUDP}
	txns := []struct {
		name     string
		txn      Txn
		services []ServiceInfo
		backends []uint32
	}{{
		name: "add",
		txn: Txn{Backends: mergeBackends(backendsOf(1, 1), backendsOf(2, 2)), Services: []ServiceTable{
			{Key: web4, Service: Service{ID: 1}, Table: patterned(7, 1)},
			{Key: dns6, Service: Service{ID: 2, HashSource: true}, Table: patterned(13, 2)},
		}},
		services: []ServiceInfo{
			{Key: web4, Service: Service{ID: 1}, Table: patterned(7, 1)},
			{Key: dns6, Service: Service{ID: 2, HashSource: true}, Table: patterned(13, 2)},
		},
		backends: []uint32{1, 2},
	}, {
		name: "resize a table, change flags and id",
		txn: Txn{Backends: backendsOf(5, 3), Services: []ServiceTable{
			{Key: web4, Service: Service{ID: 5, HashSource: true}, Table: patterned(251, 3)},
		}},
		services: []ServiceInfo{
			{Key: web4, Service: Service{ID: 5, HashSource: true}, Table: patterned(251, 3)},
			{Key: dns6, Service: Service{ID: 2, HashSource: true}, Table: patterned(13, 2)},
		},
		backends: []uint32{1, 2, 3},
	}, {
		name: "replace twice more: the slots alternate",
		txn: Txn{Services: []ServiceTable{
			{Key: web4, Service: Service{ID: 5}, Table: patterned(7, 3)},
		}},
		services: []ServiceInfo{
			{Key: web4, Service: Service{ID: 5}, Table: patterned(7, 3)},
			{Key: dns6, Service: Service{ID: 2, HashSource: true}, Table: patterned(13, 2)},
		},
		backends: []uint32{1, 2, 3},
	}, {
		name: "remove a service and a backend",
		txn:  Txn{DeleteServices: []ServiceKey{dns6}, DeleteBackends: []uint32{2}},
		services: []ServiceInfo{
			{Key: web4, Service: Service{ID: 5}, Table: patterned(7, 3)},
		},
		backends: []uint32{1, 3},
	}}
	for _, tc := range txns {
		t.Run(tc.name, func(t *testing.T) {
			apply(t, d, tc.txn)
			if diff := cmp.Diff(tc.services, sortedServices(t, d), equateAddr); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
			want := map[uint32][6]byte{}
			for _, id := range tc.backends {
				want[id] = backendMAC(id)
			}
			if diff := cmp.Diff(want, backends(t, d)); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
			// The VIP filter holds the services' addresses, and only
			// those.
			cur, err := d.services()
			if err != nil {
				t.Fatal(err)
			}
			if f, err := d.readFilter(); err != nil {
				t.Error(err)
			} else if *f != *filterOf(cur) {
				t.Errorf("VIP filter is not that of the services")
			}
			// One table per service: retired ones are gone.
			if got := len(maglevSlots(t, d)); got != len(tc.services) {
				t.Errorf("%d maglev tables for %d services: %v", got, len(tc.services), maglevSlots(t, d))
			}
		})
	}
	step{p: tcp4(51000, thSYN), verdict: verdictTX, backend: 3, svc: 5, state: FlowSYN, counters: newFlow()}.check(t, d, []uint32{5}, []uint32{3})
}

// TestApplyReusesFreedID: one transaction deletes a service and gives its
// id to a new one (a balancer that keeps ids dense does this). Both own
// the same pair of table slots, so the new table must not be built into
// the slot the old service is using, which the old service then retires.
func TestApplyReusesFreedID(t *testing.T) {
	d := newDatapath(t, Options{})
	https := ServiceKey{Addr: vip4, Port: 443, Proto: ipProtoTCP}
	alt := ServiceKey{Addr: vip4, Port: 8443, Proto: ipProtoTCP}
	apply(t, d, Txn{Backends: mergeBackends(backendsOf(1, 1), backendsOf(2, 2)), Services: []ServiceTable{
		{Key: web4, Service: Service{ID: 1}, Table: patterned(7, 1)},
		{Key: https, Service: Service{ID: 2}, Table: patterned(7, 2)},
	}})
	// The new service takes the freed id; its backend is a new one of
	// that id (the old service's is deleted with it).
	apply(t, d, Txn{
		Backends:       backendsOf(2, 3),
		DeleteServices: []ServiceKey{https},
		DeleteBackends: []uint32{2},
		Services:       []ServiceTable{{Key: alt, Service: Service{ID: 2}, Table: patterned(7, 3)}},
	})
	want := []ServiceInfo{
		{Key: web4, Service: Service{ID: 1}, Table: patterned(7, 1)},
		{Key: alt, Service: Service{ID: 2}, Table: patterned(7, 3)},
	}
	if _, err := d.Services(); err != nil {
		t.Errorf("services: %v", err)
	} else if diff := cmp.Diff(want, sortedServices(t, d), equateAddr); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	p := tcp4(52000, thSYN).with(func(p *pkt) { p.dport = 8443 })
	step{p: p, verdict: verdictTX, backend: 3, svc: 2, state: FlowSYN, counters: newFlow()}.check(t, d, []uint32{1, 2}, []uint32{1, 2, 3})
}

// TestApplySwapsIDs: two services trade ids in one transaction.
func TestApplySwapsIDs(t *testing.T) {
	d := newDatapath(t, Options{})
	https := ServiceKey{Addr: vip4, Port: 443, Proto: ipProtoTCP}
	apply(t, d, Txn{Backends: mergeBackends(backendsOf(1, 1), backendsOf(2, 2)), Services: []ServiceTable{
		{Key: web4, Service: Service{ID: 1}, Table: patterned(7, 1)},
		{Key: https, Service: Service{ID: 2}, Table: patterned(7, 2)},
	}})
	// Backend ids keep their service ids, so the swap gives each
	// service new ones.
	apply(t, d, Txn{
		Backends:       mergeBackends(backendsOf(2, 3), backendsOf(1, 4)),
		DeleteBackends: []uint32{1, 2},
		Services: []ServiceTable{
			{Key: web4, Service: Service{ID: 2}, Table: patterned(7, 3)},
			{Key: https, Service: Service{ID: 1}, Table: patterned(7, 4)},
		},
	})
	step{p: tcp4(53000, thSYN), verdict: verdictTX, backend: 3, svc: 2, state: FlowSYN, counters: newFlow()}.check(t, d, []uint32{1, 2}, []uint32{3, 4})
	step{p: tcp4(53000, thSYN).with(func(p *pkt) { p.dport = 443 }), verdict: verdictTX, backend: 4, svc: 1, state: FlowSYN, counters: newFlow()}.check(t, d, []uint32{1, 2}, []uint32{3, 4})
}

// TestApplyUnderTraffic: while transactions move a service between two
// sets of backends (resizing its table each time, removing the old set),
// every packet, new flow or known, is forwarded to a backend.
func TestApplyUnderTraffic(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, Txn{Backends: backendsTxn(1, 2)})
	apply(t, d, webTxn(patterned(251, 1, 2)))
	valid := map[macAddr]bool{}
	for id := uint32(1); id <= 4; id++ {
		valid[backendMAC(id)] = true
	}

	const rounds = 20
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		sets := [2][]uint32{{1, 2}, {3, 4}}
		sizes := [2]int{251, 509}
		for i := 1; i <= rounds; i++ {
			next, prev := sets[i%2], sets[(i+1)%2]
			txn := webTxn(patterned(sizes[i%2], next...))
			txn.Backends = backendsTxn(next...)
			txn.DeleteBackends = prev
			if err := d.Apply(txn); err != nil {
				errs <- err
				return
			}
		}
	}()

	var sent, known int
	sport := uint16(1)
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		// A new flow, then the next packet of an older one.
		for _, p := range []pkt{tcp4(sport, thSYN), tcp4(sport/2, thACK)} {
			verdict, out := run(t, d, p.build())
			sent++
			if verdict != verdictTX || !valid[macAddr(out[0:6])] {
				t.Fatalf("packet %d (%v): verdict %d, sent to %x", sent, p.flow(), verdict, out[0:6])
			}
		}
		known++
		sport++
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if c := counters(t, d); c[CounterPassNoBackend] != 0 {
		t.Errorf("pass_no_backend %d", c[CounterPassNoBackend])
	}
	t.Logf("%d packets during %d transactions", sent, rounds)
}

// TestReadopt: a run that loads with KeepFlows from the pins of one that
// served and died (closed without Unpin) and applies the same services
// again keeps every known flow on its backend, also after the next table
// swap. Nothing else is adopted: services, tables and counters start from
// the new run's own transactions.
func TestReadopt(t *testing.T) {
	dir := mountBPFFS(t)
	d1 := load(t, dir, Options{})
	dns6 := ServiceKey{Addr: vip6, Port: 53, Proto: ipProtoUDP}
	table := patterned(251, 1, 2, 3)
	setup := Txn{Backends: mergeBackends(backendsTxn(1, 2, 3), backendsOf(2, 4)), Services: []ServiceTable{
		{Key: web4, Service: Service{ID: 1}, Table: table},
		{Key: dns6, Service: Service{ID: 2, HashSource: true}, Table: patterned(13, 4)},
	}}
	apply(t, d1, setup)
	var flows []pkt
	for sport := uint16(54000); sport < 54010; sport++ {
		p := tcp4(sport, thSYN)
		run(t, d1, p.build())
		flows = append(flows, p)
	}
	run(t, d1, udp6(54000).build())
	before := stateOf(t, d1)
	if err := d1.Pin(); err != nil {
		t.Fatal(err)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	d2 := load(t, dir, Options{KeepFlows: true})
	t.Cleanup(func() { d2.Close() })
	if after := stateOf(t, d2); len(after.Services) != 0 || len(after.Flows) != 11 {
		t.Errorf("after the load: %d services, want none yet; %d flows, want 11", len(after.Services), len(after.Flows))
	}
	apply(t, d2, setup)
	after := stateOf(t, d2)
	if diff := cmp.Diff(before, after, equateAddr); diff != "" {
		t.Errorf("state once the services are applied again (-before +after):\n%s", diff)
	}
	// Known flows go on, also after the next table swap.
	apply(t, d2, webTxn(patterned(251, 3)))
	for _, p := range flows {
		step{p: p.with(func(p *pkt) { p.flags = thACK }), verdict: verdictTX, backend: predict(table, p.flow(), false),
			svc: 1, state: FlowEst}.check(t, d2, []uint32{1}, []uint32{1, 2, 3})
	}
}
