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

// migrateIDs records in backend_ids the ids an xlb from before the map
// saved as JSON (at path, beside its socket), so that upgrading from it
// keeps the flow table too. The file is removed once its ids are recorded.
func (d *Datapath) migrateIDs(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
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
		return fmt.Errorf("%s: %w", path, err)
	}
	ids := IDs{Next: max(old.Next, 1)}
	for _, e := range old.Backends {
		s := ServiceKey{Addr: e.Service.Addr, Port: e.Service.Port, Proto: e.Service.Proto}
		ids.Backends = append(ids.Backends, BackendID{Service: s, Backend: e.Backend, ID: e.ID})
	}
	if err := validateIDs(&ids); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := d.recordIDs(&ids); err != nil {
		return err
	}
	return os.Remove(path)
}
