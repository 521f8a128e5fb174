// Package balancer turns the desired state (configuration, health, runtime
// edits) into data path contents. It owns the stable ids that tie flows to
// backends, builds the Maglev tables and applies every change as one
// transaction: a rejected change leaves the running state as it was.
package balancer

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/maglev"
)

// Datapath is the part of *datapath.Datapath the balancer drives; tests
// give it a fake.
type Datapath interface {
	Apply(datapath.Txn) error
}

// Service is one virtual service as the balancer is asked to serve it.
type Service struct {
	Key datapath.ServiceKey
	// HashSource sends every connection of a client to one backend (sh,
	// persistence).
	HashSource bool
	// VLAN limits the service to frames of one 802.1Q VLAN; 0 any.
	VLAN uint16
	// TableSize is the Maglev table size; 0 picks one (see tableSize).
	TableSize uint32
	Backends  []Backend
}

// Backend is a real server of a service.
type Backend struct {
	Addr netip.Addr
	Port uint16
	// Weight is the weight the data path is to use: 0 drains (existing
	// flows stay, new ones go elsewhere).
	Weight uint32
	// MAC is the resolved link-layer address; nil keeps the backend out
	// of every table (unresolved) while its flows, if any, are re-hashed.
	MAC net.HardwareAddr
	// Ifindex is the interface the real server is on, when the data path
	// serves several; 0: the one each frame came in on.
	Ifindex uint32
	// Tunnel, when set, serves the backend by tunnel (IPVS TUN) instead:
	// it needs no MAC, only the outer addresses, both resolved.
	Tunnel *datapath.Tunnel
}

// resolved reports whether the data path can reach the backend.
func (b Backend) resolved() bool { return b.MAC != nil || b.Tunnel != nil }

// program is the backend as the data path is to hold it, as a comparable
// string: a change of MAC, interface or tunnel is a write.
func (b Backend) program() string {
	if t := b.Tunnel; t != nil {
		return fmt.Sprintf("tun %d %s %s %d %t", t.Encap, t.Dst, t.Src, t.Port, t.Csum)
	}
	return fmt.Sprintf("%s %d", b.MAC, b.Ifindex)
}

// Key is the backend's identity within its service.
func (b Backend) Key() netip.AddrPort { return netip.AddrPortFrom(b.Addr, b.Port) }

// State is what the data path serves after the last successful Apply.
type State struct {
	Services []ServiceState
}

// ServiceState is a served service.
type ServiceState struct {
	Service
	ID uint32
	// Installed is false when no backend has a positive weight and a MAC
	// or tunnel: the service has no table, so its traffic goes to the
	// local stack.
	Installed bool
	// BackendIDs parallels Backends: the id of each resolved backend,
	// 0 for an unresolved one.
	BackendIDs []uint32
	// Table is the live Maglev table.
	Table []uint32
}

// Balancer reconciles desired services with the data path.
type Balancer struct {
	mu  sync.Mutex
	dp  Datapath
	ids idState
	cur map[datapath.ServiceKey]*ServiceState
	// unrecorded is set until the first Apply records the ids: NewFrom's
	// next id may differ from the data path's record (an ids file
	// migrated, say).
	unrecorded bool
	// hold is how long a released backend id stays unused; now tells
	// the time (a seam for tests).
	hold time.Duration
	now  func() time.Time
}

// idState allocates service and backend ids. Backend ids rotate through
// the whole space before one is reused, and a released id is not given
// out again while a flow entry may still hold it (see SetIDHold), so a
// removed backend's flows are re-hashed rather than inherited by whatever
// takes its id next.
type idState struct {
	services map[datapath.ServiceKey]uint32
	backends map[backendRef]uint32
	// macs is what was written of each backend id (Backend.program).
	macs     map[uint32]string
	nextBack uint32
	usedSvc  map[uint32]bool
	usedBack map[uint32]bool
	// released holds each backend id given up within the hold, with
	// when it was: the program may follow an entry naming it until the
	// entry's timeout has passed.
	released map[uint32]time.Time
}

type backendRef struct {
	svc datapath.ServiceKey
	be  netip.AddrPort
}

// New returns a balancer that drives dp, which must start empty (or hold
// only what this process is about to re-declare).
func New(dp Datapath) *Balancer {
	return &Balancer{
		dp: dp,
		ids: idState{
			services: map[datapath.ServiceKey]uint32{},
			backends: map[backendRef]uint32{},
			macs:     map[uint32]string{},
			usedSvc:  map[uint32]bool{},
			usedBack: map[uint32]bool{},
			released: map[uint32]time.Time{},
			nextBack: 1,
		},
		cur:  map[datapath.ServiceKey]*ServiceState{},
		hold: datapath.DefaultTimeouts.Hold(),
		now:  time.Now,
	}
}

// SetIDHold sets how long a released backend id is kept from reuse:
// datapath.Timeouts.Hold of the timeouts the data path applies, after
// which no entry naming the id is followed any more. It defaults to that
// of datapath.DefaultTimeouts.
func (b *Balancer) SetIDHold(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold = d
}

// IDs returns the backend ids given out so far, in id order.
func (b *Balancer) IDs() datapath.IDs {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ids.export()
}

func (s idState) export() datapath.IDs {
	out := datapath.IDs{Next: s.nextBack}
	for ref, id := range s.backends {
		out.Backends = append(out.Backends, datapath.BackendID{Service: ref.svc, Backend: ref.be, ID: id})
	}
	slices.SortFunc(out.Backends, func(a, b datapath.BackendID) int { return int(a.ID) - int(b.ID) })
	return out
}

// NewFrom returns a balancer like New that gives the backends in ids (the
// record of an earlier run, datapath.Datapath.IDs) the same ids again and
// allocates new ones from ids.Next on, so that the flow table adopted with
// that record keeps every connection on its real server. Its data path
// must start without backends: ids of backends the first Apply no longer
// has are released without a deletion.
func NewFrom(dp Datapath, ids datapath.IDs) (*Balancer, error) {
	b := New(dp)
	b.unrecorded = true
	if ids.Next != 0 {
		if ids.Next >= datapath.MaxBackends {
			return nil, fmt.Errorf("backend ids: next %d is out of range (1-%d)", ids.Next, datapath.MaxBackends-1)
		}
		b.ids.nextBack = ids.Next
	}
	for _, e := range ids.Backends {
		ref := backendRef{e.Service, e.Backend}
		switch {
		case e.ID == 0 || e.ID >= datapath.MaxBackends:
			return nil, fmt.Errorf("backend ids: service %s: backend %s: id %d is out of range (1-%d)", e.Service, e.Backend, e.ID, datapath.MaxBackends-1)
		case b.ids.usedBack[e.ID]:
			return nil, fmt.Errorf("backend ids: service %s: backend %s: id %d is given twice", e.Service, e.Backend, e.ID)
		}
		if _, dup := b.ids.backends[ref]; dup {
			return nil, fmt.Errorf("backend ids: service %s: backend %s is listed twice", e.Service, e.Backend)
		}
		b.ids.backends[ref] = e.ID
		b.ids.usedBack[e.ID] = true
	}
	return b, nil
}

// tableSize is the Maglev table size for n backends: the default, or the
// smallest listed prime that keeps M >= 100 x n, where Maglev's balance and
// disruption bounds hold.
func tableSize(requested uint32, n int) (uint32, error) {
	if requested != 0 {
		if !maglev.ValidSize(requested) {
			return 0, fmt.Errorf("table size %d is not one of %v", requested, maglev.Sizes)
		}
		return requested, nil
	}
	want := uint64(100 * n)
	if want <= maglev.DefaultSize {
		return maglev.DefaultSize, nil
	}
	for _, m := range maglev.Sizes {
		if uint64(m) >= want {
			return m, nil
		}
	}
	return maglev.Sizes[len(maglev.Sizes)-1], nil
}

// Apply makes the data path serve exactly services. It computes the whole
// change, validates it, and applies it as one transaction; on error
// nothing changed, neither here nor in the data path.
func (b *Balancer) Apply(services []Service) error {
	b.mu.Lock()
	defer b.mu.Unlock()

	if err := validate(services); err != nil {
		return err
	}
	ids := b.ids.clone()
	next := map[datapath.ServiceKey]*ServiceState{}
	txn := datapath.Txn{Backends: map[uint32]datapath.Backend{}}
	now := b.now()
	for id, at := range ids.released {
		if now.Sub(at) >= b.hold {
			delete(ids.released, id)
		}
	}
	var errs []error

	// Services keep their ids; new ones take the lowest free id.
	for _, s := range services {
		if _, ok := ids.services[s.Key]; !ok {
			id, err := ids.allocService()
			if err != nil {
				return fmt.Errorf("service %s: %w", s.Key, err)
			}
			ids.services[s.Key] = id
		}
	}
	keepBackend := map[uint32]bool{}
	idsChanged := false
	for _, s := range services {
		st := &ServiceState{Service: s, ID: ids.services[s.Key], BackendIDs: make([]uint32, len(s.Backends))}
		var mb []maglev.Backend
		for i, be := range s.Backends {
			if !be.resolved() {
				continue
			}
			ref := backendRef{s.Key, be.Key()}
			id, ok := ids.backends[ref]
			if !ok {
				var err error
				if id, err = ids.allocBackend(now, b.hold); err != nil {
					errs = append(errs, fmt.Errorf("service %s: backend %s: %w", s.Key, be.Key(), err))
					continue
				}
				ids.backends[ref] = id
				idsChanged = true
			}
			st.BackendIDs[i] = id
			keepBackend[id] = true
			if w := be.program(); ids.macs[id] != w {
				txn.Backends[id] = datapath.Backend{MAC: be.MAC, Service: st.ID, Ifindex: be.Ifindex, Tunnel: be.Tunnel}
				ids.macs[id] = w
			}
			if be.Weight > 0 {
				mb = append(mb, maglev.Backend{ID: id, Key: be.Key().String(), Weight: be.Weight})
			}
		}
		prev := b.cur[s.Key]
		switch {
		case len(mb) > 0:
			m, err := tableSize(s.TableSize, len(mb))
			if err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w", s.Key, err))
				continue
			}
			table, err := maglev.Build(mb, m)
			if err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w", s.Key, err))
				continue
			}
			st.Table, st.Installed = table, true
		case prev != nil && prev.Installed && tableBackendsKept(prev.Table, keepBackend):
			// Every backend is drained or unresolved: keep serving the
			// last table rather than dropping the VIP's new flows.
			st.Table, st.Installed = prev.Table, true
		}
		if st.Installed && (prev == nil || !prev.Installed || prev.ID != st.ID ||
			prev.HashSource != s.HashSource || prev.VLAN != s.VLAN || !slices.Equal(prev.Table, st.Table)) {
			txn.Services = append(txn.Services, datapath.ServiceTable{
				Key:     s.Key,
				Service: datapath.Service{ID: st.ID, HashSource: s.HashSource, VLAN: s.VLAN},
				Table:   st.Table,
			})
		}
		next[s.Key] = st
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	for k, prev := range b.cur {
		if st, ok := next[k]; prev.Installed && (!ok || !st.Installed) {
			txn.DeleteServices = append(txn.DeleteServices, k)
		}
		if _, ok := next[k]; !ok {
			delete(ids.usedSvc, ids.services[k])
			delete(ids.services, k)
		}
	}
	for ref, id := range ids.backends {
		if !keepBackend[id] {
			// Only what this process wrote is in the data path: an id
			// NewFrom was handed but no backend took up is just freed.
			if _, written := ids.macs[id]; written {
				txn.DeleteBackends = append(txn.DeleteBackends, id)
			}
			delete(ids.backends, ref)
			delete(ids.usedBack, id)
			delete(ids.macs, id)
			ids.released[id] = now
			idsChanged = true
		}
	}
	if idsChanged || b.unrecorded {
		// The data path records them with the transaction that changes
		// them, for the run that adopts its flow table.
		rec := ids.export()
		txn.IDs = &rec
	}
	slices.Sort(txn.DeleteBackends)
	slices.SortFunc(txn.DeleteServices, func(a, b datapath.ServiceKey) int { return compareKeys(a, b) })

	if err := b.dp.Apply(txn); err != nil {
		return err
	}
	b.ids, b.cur = ids, next
	b.unrecorded = false
	return nil
}

// tableBackendsKept reports whether every id in table is still a backend.
func tableBackendsKept(table []uint32, keep map[uint32]bool) bool {
	seen := map[uint32]bool{}
	for _, id := range table {
		if !seen[id] {
			if !keep[id] {
				return false
			}
			seen[id] = true
		}
	}
	return true
}

// State returns a copy of what is being served, in key order.
func (b *Balancer) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st State
	for _, s := range b.cur {
		c := *s
		c.Backends = slices.Clone(s.Backends)
		c.BackendIDs = slices.Clone(s.BackendIDs)
		st.Services = append(st.Services, c)
	}
	slices.SortFunc(st.Services, func(a, b ServiceState) int { return compareKeys(a.Key, b.Key) })
	return st
}

func compareKeys(a, b datapath.ServiceKey) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if a.Port != b.Port {
		return int(a.Port) - int(b.Port)
	}
	return int(a.Proto) - int(b.Proto)
}

func validate(services []Service) error {
	var errs []error
	seen := map[datapath.ServiceKey]bool{}
	for _, s := range services {
		if seen[s.Key] {
			errs = append(errs, fmt.Errorf("service %s: declared twice", s.Key))
		}
		seen[s.Key] = true
		bes := map[netip.AddrPort]bool{}
		for _, be := range s.Backends {
			if bes[be.Key()] {
				errs = append(errs, fmt.Errorf("service %s: backend %s: declared twice", s.Key, be.Key()))
			}
			bes[be.Key()] = true
			if be.MAC != nil && be.Tunnel != nil {
				errs = append(errs, fmt.Errorf("service %s: backend %s: both a MAC and a tunnel", s.Key, be.Key()))
			}
			if be.MAC != nil && len(be.MAC) != 6 {
				errs = append(errs, fmt.Errorf("service %s: backend %s: MAC %s is not an Ethernet address", s.Key, be.Key(), be.MAC))
			}
		}
	}
	return errors.Join(errs...)
}

func (s idState) clone() idState {
	c := s
	c.services = maps.Clone(s.services)
	c.backends = maps.Clone(s.backends)
	c.macs = maps.Clone(s.macs)
	c.usedSvc = maps.Clone(s.usedSvc)
	c.usedBack = maps.Clone(s.usedBack)
	c.released = maps.Clone(s.released)
	return c
}

func (s *idState) allocService() (uint32, error) {
	for id := uint32(1); id < datapath.MaxServices; id++ {
		if !s.usedSvc[id] {
			s.usedSvc[id] = true
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free service id: at most %d services", datapath.MaxServices-1)
}

// allocBackend gives out the next id in rotation that is neither in use
// nor released less than hold before now.
func (s *idState) allocBackend(now time.Time, hold time.Duration) (uint32, error) {
	held := 0
	for range datapath.MaxBackends {
		id := s.nextBack
		s.nextBack++
		if s.nextBack >= datapath.MaxBackends {
			s.nextBack = 1
		}
		if s.usedBack[id] {
			continue
		}
		if at, ok := s.released[id]; ok && now.Sub(at) < hold {
			held++
			continue
		}
		delete(s.released, id)
		s.usedBack[id] = true
		return id, nil
	}
	if held > 0 {
		return 0, fmt.Errorf("no free backend id: %d are held until flow entries that may name them time out (%v)", held, hold)
	}
	return 0, fmt.Errorf("no free backend id: at most %d backends", datapath.MaxBackends-1)
}
