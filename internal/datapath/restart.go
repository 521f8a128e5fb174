package datapath

// Restart state. A run that ends without Unpin (a crash, SIGKILL, an
// upgrade) leaves its program forwarding with the flow table it pinned. The
// flow table holds backend ids, so it is worth keeping only together with
// what each id stands for: the backend_ids map, pinned beside it and
// written in the same transactions that give ids out. Load adopts both or
// neither. The pin directory is locked for the life of a Datapath, so that
// two daemons never adopt, clear or write the same pins.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// IDs are the backend ids a run gave out: what a later run needs to give
// the same real servers the same ids, so that the flow table it adopts
// still points each connection at its real server.
type IDs struct {
	// Next is where backend id allocation goes on.
	Next     uint32
	Backends []BackendID
}

// BackendID is the id of one real server of one service.
type BackendID struct {
	Service ServiceKey
	Backend netip.AddrPort
	ID      uint32
}

// IDs returns the backend ids recorded by the run whose flow table Load
// adopted, in id order; none when it started afresh.
func (d *Datapath) IDs() IDs {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := IDs{Next: d.nextID}
	for ref, id := range d.ids {
		out.Backends = append(out.Backends, BackendID{Service: ref.Service.key(), Backend: ref.backend(), ID: id})
	}
	slices.SortFunc(out.Backends, func(a, b BackendID) int { return int(a.ID) - int(b.ID) })
	return out
}

// LockedError is returned by Load when another process holds the pin
// directory.
type LockedError struct {
	Dir string
	// PID is the holder's process id, 0 when the kernel did not say.
	PID int
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("datapath: pin directory %s is locked by another xlb", e.Dir)
	}
	return fmt.Sprintf("datapath: pin directory %s is locked by another xlb (pid %d)", e.Dir, e.PID)
}

// lockDir takes an exclusive flock on dir without waiting. The lock goes
// with the descriptor: it is released when the process dies, however it
// dies, and it is not inherited by the scripts the daemon runs (the
// descriptor is close-on-exec).
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("datapath: lock pin directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: lockHolder(dir)}
		}
		return nil, fmt.Errorf("datapath: lock pin directory %s: %w", dir, err)
	}
	return f, nil
}

// lockHolder finds the process holding a flock on path in /proc/locks,
// where each lock names its inode as MAJOR:MINOR:INODE (hexadecimal device
// numbers).
func lockHolder(path string) int {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 13567 00:2d:38897 0 EOF
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil {
			return pid
		}
	}
	return 0
}

// nextIDKey is where backend_ids keeps the allocator's next id: no service
// has family 0.
var nextIDKey lbBackendRef

func refOf(b BackendID) lbBackendRef {
	a := b.Backend.Addr().Unmap()
	return lbBackendRef{
		Service: b.Service.bpf(),
		Addr:    addrBytes(a, family(a)),
		Port:    htons(b.Backend.Port()),
		Family:  family(a),
	}
}

func (r lbBackendRef) backend() netip.AddrPort {
	return netip.AddrPortFrom(getAddr(r.Addr, r.Family), ntohs(r.Port))
}

// readIDs loads the backend_ids map into d.ids and d.nextID.
func (d *Datapath) readIDs() error {
	d.ids = map[lbBackendRef]uint32{}
	var k lbBackendRef
	var id uint32
	it := d.objs.BackendIds.Iterate()
	for it.Next(&k, &id) {
		if k == nextIDKey {
			d.nextID = id
			continue
		}
		d.ids[k] = id
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("datapath: read backend ids: %w", err)
	}
	return nil
}

// recordIDs adds to backend_ids the entries of ids it lacks, and the next
// id. A transaction records before it adds backends and forgets (forgetIDs)
// after it deleted them, so that every id the flow table may hold is
// recorded at every moment.
func (d *Datapath) recordIDs(ids *IDs) error {
	if ids == nil {
		return nil
	}
	for _, b := range ids.Backends {
		k := refOf(b)
		if old, ok := d.ids[k]; ok && old == b.ID {
			continue
		}
		if err := d.objs.BackendIds.Update(k, b.ID, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("datapath: record backend id %d: %w", b.ID, err)
		}
		d.ids[k] = b.ID
	}
	if ids.Next != d.nextID {
		if err := d.objs.BackendIds.Update(nextIDKey, ids.Next, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("datapath: record next backend id: %w", err)
		}
		d.nextID = ids.Next
	}
	return nil
}

// forgetIDs removes from backend_ids the entries ids no longer has.
func (d *Datapath) forgetIDs(ids *IDs) error {
	if ids == nil {
		return nil
	}
	keep := make(map[lbBackendRef]bool, len(ids.Backends))
	for _, b := range ids.Backends {
		keep[refOf(b)] = true
	}
	for k, id := range d.ids {
		if keep[k] {
			continue
		}
		if err := d.objs.BackendIds.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("datapath: forget backend id %d: %w", id, err)
		}
		delete(d.ids, k)
	}
	return nil
}

// validateIDs checks the ids a transaction records.
func validateIDs(ids *IDs) error {
	if ids == nil {
		return nil
	}
	var errs []error
	if ids.Next == 0 || ids.Next >= MaxBackends {
		errs = append(errs, fmt.Errorf("next backend id %d: out of range [1, %d)", ids.Next, MaxBackends))
	}
	seen := map[uint32]bool{}
	for _, b := range ids.Backends {
		if b.ID == 0 || b.ID >= MaxBackends {
			errs = append(errs, fmt.Errorf("service %s: backend %s: id %d out of range [1, %d)", b.Service, b.Backend, b.ID, MaxBackends))
		}
		if seen[b.ID] {
			errs = append(errs, fmt.Errorf("service %s: backend %s: id %d recorded twice", b.Service, b.Backend, b.ID))
		}
		seen[b.ID] = true
		if err := b.Service.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readLegacyIDs reads the ids an xlb from before the backend_ids map saved
// as JSON (at path, beside its socket), so that upgrading from it keeps the
// flow table too. Pin removes the file once its ids are in the pinned map.
func readLegacyIDs(path string) (*IDs, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var old struct {
		Next     uint32 `json:"next"`
		Backends []struct {
			Service struct {
				Addr  netip.Addr
				Port  uint16
				Proto uint8
			} `json:"service"`
			Backend netip.AddrPort `json:"backend"`
			ID      uint32         `json:"id"`
		} `json:"backends"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ids := IDs{Next: max(old.Next, 1)}
	for _, e := range old.Backends {
		s := ServiceKey{Addr: e.Service.Addr, Port: e.Service.Port, Proto: e.Service.Proto}
		ids.Backends = append(ids.Backends, BackendID{Service: s, Backend: e.Backend, ID: e.ID})
	}
	if err := validateIDs(&ids); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &ids, nil
}

// IncompatibleError is returned by Load when the flow table or the id
// record an earlier run pinned has a layout this build cannot read, while
// that run's program may still be forwarding with it.
type IncompatibleError struct {
	Map             string
	Pinned, ThisOne string
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("datapath: the pinned %s map (%s) is not what this build uses (%s) and a program may still be forwarding with it: "+
		"refusing to take it over, the running data path is left as it is; `xlb stop` removes it (its connections then start afresh)", e.Map, e.Pinned, e.ThisOne)
}

// previous is what Load takes over from an earlier run.
type previous struct {
	// flows are the earlier run's flow maps by name (flowMapNames), all
	// or none.
	flows map[string]*ebpf.Map
	// copy are those of them of another size, copied rather than shared.
	copy map[string]*ebpf.Map
	// ids is what the backend ids in flows stand for.
	ids *IDs
	// legacy is the JSON file ids came from, if they did.
	legacy string
}

func (p previous) close() {
	for _, m := range p.flows {
		m.Close()
	}
}

// previousRun opens the flow table and the id record pinned in the pin
// directory. A flow table is worth adopting only with its ids; one of a
// layout this build cannot read is refused while a program may still use
// it (a pinned XDP link), and otherwise left for the fresh start to
// replace.
func (d *Datapath) previousRun(spec *ebpf.CollectionSpec, legacy string) (previous, error) {
	live := d.linked()
	p := previous{flows: map[string]*ebpf.Map{}, copy: map[string]*ebpf.Map{}}
	for _, name := range flowMapNames {
		m, err := ebpf.LoadPinnedMap(filepath.Join(d.pinDir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			p.close()
			return previous{}, nil
		}
		if err != nil {
			p.close()
			return previous{}, fmt.Errorf("datapath: pinned flow table %s: %w", name, err)
		}
		p.flows[name] = m
		if !sameLayout(m, spec.Maps[name]) {
			p.close()
			if live {
				return previous{}, &IncompatibleError{Map: name, Pinned: layoutOf(m), ThisOne: specLayout(spec.Maps[name])}
			}
			return previous{}, nil
		}
	}
	ids, err := ebpf.LoadPinnedMap(filepath.Join(d.pinDir, lbMapBackendIds), nil)
	switch {
	case err == nil:
		defer ids.Close()
		if !sameLayout(ids, spec.Maps[lbMapBackendIds]) {
			p.close()
			if live {
				return previous{}, &IncompatibleError{Map: lbMapBackendIds, Pinned: layoutOf(ids), ThisOne: specLayout(spec.Maps[lbMapBackendIds])}
			}
			return previous{}, nil
		}
		if p.ids, err = pinnedIDs(ids); err != nil {
			p.close()
			return previous{}, err
		}
	case errors.Is(err, os.ErrNotExist) && legacy != "":
		if p.ids, err = readLegacyIDs(legacy); err != nil {
			p.close()
			if errors.Is(err, os.ErrNotExist) {
				return previous{}, nil
			}
			return previous{}, fmt.Errorf("datapath: backend ids of an earlier xlb: %w", err)
		}
		p.legacy = legacy
	case errors.Is(err, os.ErrNotExist):
		p.close()
		return previous{}, nil
	default:
		p.close()
		return previous{}, fmt.Errorf("datapath: pinned backend ids: %w", err)
	}
	return p, nil
}

// pinnedIDs reads an id record.
func pinnedIDs(m *ebpf.Map) (*IDs, error) {
	ids := &IDs{}
	var k lbBackendRef
	var id uint32
	it := m.Iterate()
	for it.Next(&k, &id) {
		if k == nextIDKey {
			ids.Next = id
			continue
		}
		ids.Backends = append(ids.Backends, BackendID{Service: k.Service.key(), Backend: k.backend(), ID: id})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("datapath: read pinned backend ids: %w", err)
	}
	if err := validateIDs(ids); ids.Next != 0 && err != nil {
		return nil, fmt.Errorf("datapath: pinned backend ids: %w", err)
	}
	return ids, nil
}

// sameLayout reports whether m can stand in for spec but for its size.
func sameLayout(m *ebpf.Map, spec *ebpf.MapSpec) bool {
	return m.Type() == spec.Type && m.KeySize() == spec.KeySize && m.ValueSize() == spec.ValueSize && m.Flags() == spec.Flags
}

func layoutOf(m *ebpf.Map) string {
	return fmt.Sprintf("%s, key %d bytes, value %d bytes, flags %#x", m.Type(), m.KeySize(), m.ValueSize(), m.Flags())
}

func specLayout(s *ebpf.MapSpec) string {
	return fmt.Sprintf("%s, key %d bytes, value %d bytes, flags %#x", s.Type, s.KeySize, s.ValueSize, s.Flags)
}

// linked reports whether an XDP link is pinned in the pin directory: the
// program of the run that pinned it may still be forwarding.
func (d *Datapath) linked() bool {
	links, _ := filepath.Glob(filepath.Join(d.pinDir, linkPrefix+"*"))
	return len(links) > 0
}

// copyFlows copies into to every entry of from that to lacks; both are
// maps of one layout, whichever flow map it is.
func copyFlows(from, to *ebpf.Map) error {
	k, v := make([]byte, from.KeySize()), make([]byte, from.ValueSize())
	it := from.Iterate()
	for it.Next(&k, &v) {
		if err := to.Update(&k, &v, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("datapath: copy the flow table: %w", err)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("datapath: copy the flow table: %w", err)
	}
	return nil
}

// Pin pins every map in the pin directory, each in place of the earlier
// run's pin of the same name with one rename, so that bpftool and the next
// run see this run's maps and never a missing one. A flow table copied at
// Load gets what the earlier run's program placed since, once more.
func (d *Datapath) Pin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	maps := d.mapsByName()
	for name, old := range d.adopted {
		if err := copyFlows(old, maps[name]); err != nil {
			return err
		}
	}
	for _, name := range mapNames {
		path := filepath.Join(d.pinDir, name)
		tmp := filepath.Join(d.pinDir, "new_"+name) // bpffs refuses names with dots
		_ = os.Remove(tmp)
		m, err := maps[name].Clone()
		if err != nil {
			return fmt.Errorf("datapath: pin %s: %w", name, err)
		}
		err = m.Pin(tmp)
		m.Close()
		if err != nil {
			return fmt.Errorf("datapath: pin %s: %w", name, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("datapath: pin %s: %w", name, err)
		}
	}
	if d.legacyIDs != "" {
		if err := os.Remove(d.legacyIDs); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("datapath: remove %s, now pinned as %s: %w", d.legacyIDs, lbMapBackendIds, err)
		}
		d.legacyIDs = ""
	}
	return d.dropStalePorts()
}

// mapsByName are the maps of the program by their pinned names.
func (d *Datapath) mapsByName() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		lbMapServices: d.objs.Services, lbMapMaglev: d.objs.Maglev, lbMapBackends: d.objs.Backends,
		lbMapBackendIds: d.objs.BackendIds, lbMapStats: d.objs.Stats, lbMapCounters: d.objs.Counters,
		lbMapVipFilter: d.objs.VipFilter, lbMapNexthops: d.objs.Nexthops, lbMapSvcVlan: d.objs.SvcVlan, lbMapTxPorts: d.objs.TxPorts, lbMapIfaces: d.objs.Ifaces,
		lbMapFlows4: d.objs.Flows4, lbMapFlows6: d.objs.Flows6,
		lbMapProbation4: d.objs.Probation4, lbMapProbation6: d.objs.Probation6,
		lbMapFrags: d.objs.Frags,
	}
}
