package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Service is what a service key maps to.
type Service struct {
	// ID indexes the service's counters and picks its pair of Maglev
	// table slots; unique among services, in [1, MaxServices).
	ID uint32
	// HashSource hashes on the client address only, so every connection
	// of a client lands on one backend (IPVS sh, keepalived persistence).
	HashSource bool
	// VLAN limits the service to frames tagged with this 802.1Q VLAN id:
	// frames of its VIP that arrive untagged or on another VLAN are
	// passed to the kernel. 0 takes every frame.
	VLAN uint16
}

// MaxVLAN is the highest VLAN id a service can be limited to (4095 is
// reserved by 802.1Q).
const MaxVLAN = 4094

// ServiceTable sets a service and its Maglev table.
type ServiceTable struct {
	Key     ServiceKey
	Service Service
	// Table holds backend ids; its length (a prime from the Maglev sizes)
	// is the table size. Every id must be present once the transaction
	// is applied.
	Table []uint32
}

// Backend is what a backend id stands for in the program.
type Backend struct {
	// MAC is a direct-routing backend's link-layer address; nil for a
	// tunnel backend, whose next hop the program asks the FIB for.
	MAC net.HardwareAddr
	// Service is the id of the one service the backend id was given out
	// for: only that service's table may name it, and the program follows
	// a flow entry to it only for that service.
	Service uint32
	// Ifindex is the interface the real server is on (see Attach);
	// 0 sends its frames back out of the interface they came in on.
	Ifindex uint32
	// Tunnel, when set, makes the backend a tunnel backend (IPVS TUN):
	// its packets are encapsulated to Tunnel.Dst rather than handed over
	// on the segment.
	Tunnel *Tunnel
}

// Encap is a tunnel's outer header.
type Encap uint8

// Encapsulations the program builds.
const (
	// EncapIPIP is IPv4 in IPv4 or IPv6 in IPv6 (IP protocol 4 or 41).
	EncapIPIP Encap = iota + 1
	// EncapGUE is outer IP, UDP to Tunnel.Port and a 4-byte GUE header.
	EncapGUE
)

// Tunnel is where and how a tunnel backend's packets are encapsulated.
// The outer family is the service's: IPv4 in IPv4, IPv6 in IPv6.
type Tunnel struct {
	Encap Encap
	// Dst is the real server's address, the outer destination.
	Dst netip.Addr
	// Src is the outer source: an address of the balancer's that the
	// real server (and every router on the way) accepts packets from.
	Src netip.Addr
	// Port is GUE's UDP destination port.
	Port uint16
	// Csum fills GUE's outer UDP checksum; otherwise it is zero.
	Csum bool
}

// nextGen is a tunnel backend's next generation: the program's cached
// route (struct nexthop) holds only for the generation it was asked for,
// so a changed tunnel is routed afresh at once. Never 0, which no entry
// of the cache matches.
func (d *Datapath) nextGen() uint8 {
	d.tunGen++
	if d.tunGen == 0 {
		d.tunGen = 1
	}
	return d.tunGen
}

// validate reports a tunnel the program cannot build.
func (t *Tunnel) validate() error {
	switch {
	case t.Encap != EncapIPIP && t.Encap != EncapGUE:
		return fmt.Errorf("unknown encapsulation %d", t.Encap)
	case !t.Dst.IsValid() || !t.Src.IsValid() || t.Dst.Is4In6() || t.Src.Is4In6():
		return fmt.Errorf("tunnel addresses %v and %v must both be set", t.Dst, t.Src)
	case t.Dst.Is4() != t.Src.Is4():
		return fmt.Errorf("tunnel source %v and destination %v are not one family", t.Src, t.Dst)
	case t.Encap == EncapGUE && t.Port == 0:
		return fmt.Errorf("gue tunnel to %v without a port", t.Dst)
	case t.Encap == EncapIPIP && (t.Port != 0 || t.Csum):
		return fmt.Errorf("ipip tunnel to %v with a port or checksum", t.Dst)
	}
	return nil
}

// value is the backend as the program reads it.
func (be Backend) value() lbBackend {
	var b lbBackend
	copy(b.Mac[:], be.MAC)
	b.Flags = backendPresent
	b.Service = be.Service
	b.Ifindex = be.Ifindex
	if t := be.Tunnel; t != nil {
		switch {
		case t.Encap == EncapIPIP:
			b.Flags |= backendTunIPIP
		case t.Csum:
			b.Flags |= backendTunGUE | backendGUECsum
		default:
			b.Flags |= backendTunGUE
		}
		b.Family = family(t.Dst)
		b.Addr = addrBytes(t.Dst, b.Family)
		b.Src = addrBytes(t.Src, b.Family)
		b.Port = htons(t.Port)
	}
	return b
}

// Txn is a set of changes applied together by Apply.
type Txn struct {
	// Backends adds backends or changes their MAC; a present backend
	// keeps its flows even when no table lists it (draining). A backend's
	// service does not change while the id is present: delete it first.
	Backends map[uint32]Backend
	// Services adds services or replaces their tables.
	Services []ServiceTable
	// DeleteServices removes services; their flows stop matching.
	DeleteServices []ServiceKey
	// DeleteBackends removes backends: their flows are re-hashed.
	DeleteBackends []uint32
	// IDs, when set, is every backend id given out once the transaction
	// is applied: the record a later run adopts with the flow table (see
	// Datapath.IDs). Nil leaves the record as it is.
	IDs *IDs
}

// Apply validates t against the running state and applies it so that a
// packet sees the old state or the new one, never a mix that loses it:
// backends are added first, each new table is built in its service's
// spare slot and switched to with one write of the service, the kernel
// then waits out every program run that may still read an old table, and
// only then are old tables, services and backends removed. A t that fails
// validation changes nothing.
func (d *Datapath) Apply(t Txn) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	cur, err := d.services()
	if err != nil {
		return err
	}
	if err := d.validate(t, cur); err != nil {
		return err
	}
	if err := d.recordIDs(t.IDs); err != nil {
		return err
	}

	for id, be := range t.Backends {
		v := be.value()
		if be.Tunnel != nil {
			v.Gen = d.nextGen()
		}
		if err := d.objs.Backends.Update(id, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("datapath: backend %d: %w", id, err)
		}
	}

	// Build every table in a spare slot before any service switches, so
	// a failure here leaves all services on their old tables. The tables
	// go into the outer map in one batch: each write of a map-in-map waits
	// for an RCU grace period (about 10 ms here), once per syscall.
	type switchTo struct {
		key  lbVipKey
		meta lbVipMeta
		old  *lbVipMeta
	}
	var switches []switchTo
	var slots []uint32
	var tables []*ebpf.Map
	defer func() {
		for _, m := range tables {
			m.Close() // the outer map holds its own references
		}
	}()
	// A table goes into whichever of its id's two slots no live service
	// uses: ids are unique, so at most one live table sits in the pair,
	// even when this transaction moves an id from one service to another.
	live := map[uint32]bool{}
	for _, m := range cur {
		live[m.Table] = true
	}
	for _, st := range t.Services {
		key := st.Key.bpf()
		slot := slotsPerService * st.Service.ID
		if live[slot] {
			slot++
		}
		var old *lbVipMeta
		if m, ok := cur[key]; ok {
			old = &m
		}
		m, err := d.newTable(st.Table)
		if err != nil {
			return fmt.Errorf("datapath: service %s: %w", st.Key, err)
		}
		tables = append(tables, m)
		slots = append(slots, slot)
		meta := lbVipMeta{Id: st.Service.ID, Table: slot, Size: uint32(len(st.Table))}
		if st.Service.HashSource {
			meta.Flags |= svcFlagHashSrc
		}
		switches = append(switches, switchTo{key: key, meta: meta, old: old})
	}
	if err := d.putSlots(slots, tables); err != nil {
		return err
	}
	undoBuilt := func() { _ = d.retire(slots) }
	// The VIP filter lets through every address of the old and the new
	// services while the services switch, and only the new ones after.
	final := maps.Clone(cur)
	for _, sw := range switches {
		final[sw.key] = sw.meta
	}
	for _, k := range t.DeleteServices {
		delete(final, k.bpf())
	}
	have, err := d.readFilter()
	if err != nil {
		undoBuilt()
		return err
	}
	during, after := filterOf(cur, final), filterOf(final)
	if err := d.writeFilter(have, during); err != nil {
		undoBuilt()
		return err
	}
	// A service's VLAN is read by id, on every packet: it is set before
	// the service switches, so its new table never serves another VLAN.
	undoVLANs, err := d.setVLANs(t.Services)
	if err != nil {
		undoBuilt()
		return err
	}
	for i, s := range switches {
		if err := d.objs.Services.Update(s.key, s.meta, ebpf.UpdateAny); err != nil {
			// Put back the services already switched: a half-applied
			// transaction is what Apply promises never to leave.
			for _, p := range switches[:i] {
				if p.old != nil {
					_ = d.objs.Services.Update(p.key, *p.old, ebpf.UpdateAny)
				} else {
					_ = d.objs.Services.Delete(p.key)
				}
			}
			undoVLANs()
			undoBuilt()
			return fmt.Errorf("datapath: service %s: %w", s.key.key(), err)
		}
	}
	var retired []uint32
	for _, s := range switches {
		if s.old != nil {
			retired = append(retired, s.old.Table)
		}
	}
	for _, k := range t.DeleteServices {
		key := k.bpf()
		m := cur[key]
		if err := d.objs.Services.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("datapath: delete service %s: %w", k, err)
		}
		retired = append(retired, m.Table)
	}
	if len(retired) > 0 || len(t.DeleteBackends) > 0 {
		if err := d.waitForReaders(); err != nil {
			return err
		}
	}
	if err := d.retire(retired); err != nil {
		return err
	}
	if err := d.writeFilter(during, after); err != nil {
		return err
	}
	for _, id := range t.DeleteBackends {
		if err := d.objs.Backends.Update(id, lbBackend{}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("datapath: delete backend %d: %w", id, err)
		}
	}
	// A transaction after an interface came back names its new index:
	// the old one's entry has served its turn (see dropTxPort).
	for _, old := range d.staleIfaces {
		if err := d.objs.Ifaces.Delete(old); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("datapath: interface %d: forget: %w", old, err)
		}
	}
	d.staleIfaces = nil
	return d.forgetIDs(t.IDs)
}

// setVLANs writes the VLAN of each service by its id, and returns what
// puts back the values it replaced.
func (d *Datapath) setVLANs(sts []ServiceTable) (undo func(), err error) {
	old := map[uint32]uint32{}
	undo = func() {
		for id, v := range old {
			_ = d.objs.SvcVlan.Update(id, v, ebpf.UpdateAny)
		}
	}
	for _, st := range sts {
		id := st.Service.ID
		var prev uint32
		if err := d.objs.SvcVlan.Lookup(id, &prev); err != nil {
			undo()
			return nil, fmt.Errorf("datapath: service %s: read vlan: %w", st.Key, err)
		}
		if _, seen := old[id]; !seen {
			old[id] = prev
		}
		if err := d.objs.SvcVlan.Update(id, uint32(st.Service.VLAN), ebpf.UpdateAny); err != nil {
			undo()
			return nil, fmt.Errorf("datapath: service %s: vlan %d: %w", st.Key, st.Service.VLAN, err)
		}
	}
	return undo, nil
}

// waitForReaders returns once every program run that started before it
// has finished. A write to a map-in-map waits for an RCU grace period in
// the kernel before it returns; slot 0 belongs to no service (ids start at
// 1), so writing the retired placeholder there changes nothing else.
func (d *Datapath) waitForReaders() error {
	if err := d.objs.Maglev.Update(uint32(0), d.retired, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("datapath: maglev slot 0: %w", err)
	}
	return nil
}

// newTable creates an array of len(table) entries and fills it through a
// shared mapping of its memory. Nothing reads the array before it is
// stored in the outer map, so a plain copy is safe. The mapping is removed
// at once: a live mapping would hold the table in the kernel after it is
// retired.
func (d *Datapath) newTable(table []uint32) (*ebpf.Map, error) {
	spec := d.inner.Copy()
	spec.MaxEntries = uint32(len(table))
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("maglev table of %d: %w", len(table), err)
	}
	if err := fillArray(m, table); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill maglev table of %d: %w", len(table), err)
	}
	return m, nil
}

// arrayStride is the distance between the values of an array map: the
// kernel rounds each value up to 8 bytes.
const arrayStride = 8

// fillArray writes values into the mmapable array m, in the kernel's
// layout: one value per arrayStride bytes, in host byte order.
func fillArray(m *ebpf.Map, values []uint32) error {
	size := (len(values)*arrayStride + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	for i, v := range values {
		binary.NativeEndian.PutUint32(mem[i*arrayStride:], v)
	}
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

// putSlots stores tables[i] in slots[i] with one syscall.
func (d *Datapath) putSlots(slots []uint32, tables []*ebpf.Map) error {
	if len(slots) == 0 {
		return nil
	}
	fds := make([]uint32, len(tables))
	for i, m := range tables {
		fds[i] = uint32(m.FD())
	}
	if _, err := d.objs.Maglev.BatchUpdate(slots, fds, nil); err != nil {
		return fmt.Errorf("datapath: maglev slots %v: %w", slots, err)
	}
	return nil
}

// retire releases the tables in slots by storing the shared one-entry
// placeholder there: arrays of maps have no batch delete, and a delete per
// slot would wait a grace period per slot.
func (d *Datapath) retire(slots []uint32) error {
	if len(slots) == 0 {
		return nil
	}
	ph := make([]*ebpf.Map, len(slots))
	for i := range ph {
		ph[i] = d.retired
	}
	return d.putSlots(slots, ph)
}

func (d *Datapath) services() (map[lbVipKey]lbVipMeta, error) {
	out := map[lbVipKey]lbVipMeta{}
	var k lbVipKey
	var v lbVipMeta
	it := d.objs.Services.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("datapath: read services: %w", err)
	}
	return out, nil
}

// validate checks t against the current services and backends, and
// reports every problem at once.
func (d *Datapath) validate(t Txn, cur map[lbVipKey]lbVipMeta) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	deletedBackend := map[uint32]bool{}
	for _, id := range t.DeleteBackends {
		if id == 0 || id >= MaxBackends {
			bad("backend id %d: out of range [1, %d)", id, MaxBackends)
		}
		if _, ok := t.Backends[id]; ok {
			bad("backend id %d: both set and deleted", id)
		}
		deletedBackend[id] = true
	}
	for id, be := range t.Backends {
		if id == 0 || id >= MaxBackends {
			bad("backend id %d: out of range [1, %d)", id, MaxBackends)
		}
		if be.Tunnel != nil {
			if err := be.Tunnel.validate(); err != nil {
				bad("backend id %d: %v", id, err)
			}
			if be.MAC != nil {
				bad("backend id %d: a tunnel backend has no MAC", id)
			}
		} else if len(be.MAC) != macLen {
			bad("backend id %d: MAC %q is not an Ethernet address", id, be.MAC)
		}
		if be.Service == 0 || be.Service >= MaxServices {
			bad("backend id %d: service id %d out of range [1, %d)", id, be.Service, MaxServices)
		}
	}
	// owner returns the service id of a backend once t is applied, and
	// whether it is present then.
	owner := func(id uint32) (uint32, bool, error) {
		if be, ok := t.Backends[id]; ok {
			return be.Service, true, nil
		}
		if deletedBackend[id] || id == 0 || id >= MaxBackends {
			return 0, false, nil
		}
		var b lbBackend
		if err := d.objs.Backends.Lookup(id, &b); err != nil {
			return 0, false, err
		}
		return b.Service, b.Flags&backendPresent != 0, nil
	}
	// An id keeps its service while present: a flow entry naming it was
	// placed by that service.
	for id, be := range t.Backends {
		var cur lbBackend
		if id == 0 || id >= MaxBackends {
			continue
		}
		if err := d.objs.Backends.Lookup(id, &cur); err != nil {
			bad("backend id %d: %w", id, err)
		} else if cur.Flags&backendPresent != 0 && cur.Service != be.Service {
			bad("backend id %d: belongs to service id %d, not %d: delete it before giving it out again", id, cur.Service, be.Service)
		}
	}

	// The final set of services: ids must be unique in it.
	final := map[lbVipKey]uint32{}
	for k, m := range cur {
		final[k] = m.Id
	}
	deleted := map[lbVipKey]bool{}
	for _, k := range t.DeleteServices {
		if err := k.validate(); err != nil {
			bad("delete %w", err)
			continue
		}
		if _, ok := cur[k.bpf()]; !ok {
			bad("delete service %s: no such service", k)
		}
		deleted[k.bpf()] = true
		delete(final, k.bpf())
	}
	seen := map[lbVipKey]bool{}
	for _, st := range t.Services {
		if err := st.Key.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		key := st.Key.bpf()
		if seen[key] || deleted[key] {
			bad("service %s: set twice or both set and deleted", st.Key)
		}
		seen[key] = true
		if st.Service.ID == 0 || st.Service.ID >= MaxServices {
			bad("service %s: id %d out of range [1, %d)", st.Key, st.Service.ID, MaxServices)
		}
		if n := len(st.Table); n == 0 || n > MaxTableSize {
			bad("service %s: table size %d out of range [1, %d]", st.Key, n, MaxTableSize)
		}
		if st.Service.VLAN > MaxVLAN {
			bad("service %s: vlan %d out of range [0, %d]", st.Key, st.Service.VLAN, MaxVLAN)
		}
		final[key] = st.Service.ID
		checked := map[uint32]bool{}
		for _, id := range st.Table {
			if checked[id] {
				continue
			}
			checked[id] = true
			svc, ok, err := owner(id)
			switch {
			case err != nil:
				bad("service %s: backend id %d: %w", st.Key, id, err)
			case !ok:
				bad("service %s: table names backend id %d, which is not present", st.Key, id)
			case svc != st.Service.ID:
				bad("service %s: table names backend id %d, which is service id %d's", st.Key, id, svc)
			}
		}
	}
	if len(deletedBackend) > 0 {
		// A table that stays must not name a backend that goes.
		for k, m := range cur {
			if seen[k] || deleted[k] {
				continue
			}
			table, err := d.table(m.Table)
			if err != nil {
				bad("service %s: %w", k.key(), err)
				continue
			}
			for _, id := range table {
				if deletedBackend[id] {
					bad("service %s: its table still names backend id %d, which is deleted", k.key(), id)
					break
				}
			}
		}
	}
	byID := map[uint32][]string{}
	for k, id := range final {
		byID[id] = append(byID[id], k.key().String())
	}
	for id, keys := range byID {
		if len(keys) > 1 {
			slices.Sort(keys)
			bad("service id %d: used by %v", id, keys)
		}
	}
	if err := validateIDs(t.IDs); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("datapath: transaction rejected: %w", errors.Join(errs...))
	}
	return nil
}

// table reads the Maglev table in slot.
func (d *Datapath) table(slot uint32) ([]uint32, error) {
	var id ebpf.MapID
	if err := d.objs.Maglev.Lookup(slot, &id); err != nil {
		return nil, fmt.Errorf("maglev slot %d: %w", slot, err)
	}
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("maglev slot %d: %w", slot, err)
	}
	defer m.Close()
	keys := make([]uint32, m.MaxEntries())
	out := make([]uint32, m.MaxEntries())
	var cursor ebpf.MapBatchCursor
	n, err := m.BatchLookup(&cursor, keys, out, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("maglev slot %d: %w", slot, err)
	}
	if n != len(out) {
		return nil, fmt.Errorf("maglev slot %d: read %d of %d entries", slot, n, len(out))
	}
	return out, nil
}
