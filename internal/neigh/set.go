package neigh

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// Set resolves neighbours on several interfaces (a balancer with real
// servers behind another interface than its clients'): each address on
// the interface the kernel routes it out of, the first interface when no
// route names one of the others. It is a Cache's resolver, and tells which
// interface each resolved address is on.
type Set struct {
	rs []*Resolver

	mu sync.Mutex
	on map[netip.Addr]*Resolver // the Resolver that last resolved each address
}

// NewSet returns a Set of a Resolver for each of ifnames, which must not
// be empty. Like New, it lives in the calling thread's network namespace.
func NewSet(ifnames []string, log *slog.Logger) (*Set, error) {
	if len(ifnames) == 0 {
		return nil, errors.New("neighbours: no interface")
	}
	s := &Set{on: map[netip.Addr]*Resolver{}}
	for _, name := range ifnames {
		r, err := New(name, log)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.rs = append(s.rs, r)
	}
	return s, nil
}

// of is the Resolver of the interface ip is reached through.
func (s *Set) of(ip netip.Addr) *Resolver {
	if len(s.rs) == 1 {
		return s.rs[0]
	}
	routes, err := s.rs[0].nl.RouteGet(net.IP(ip.Unmap().AsSlice()))
	if err == nil && len(routes) > 0 {
		for _, r := range s.rs {
			if r.iface().Index == routes[0].LinkIndex {
				return r
			}
		}
	}
	return s.rs[0]
}

// Resolve resolves ip on the interface it is reached through (see
// Resolver.Resolve) and remembers which that is, for Ifindex.
func (s *Set) Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	r := s.of(ip)
	mac, err := r.Resolve(ctx, ip)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.on[ip] = r
	s.mu.Unlock()
	return mac, nil
}

// Ifindex is the current index of the interface ip was last resolved on,
// 0 for an address never resolved.
func (s *Set) Ifindex(ip netip.Addr) uint32 {
	s.mu.Lock()
	r := s.on[ip]
	s.mu.Unlock()
	if r == nil {
		return 0
	}
	return uint32(r.iface().Index)
}

// Watch merges the neighbour changes of every interface (see
// Resolver.Watch), keeping for each address only those of the interface it
// was resolved on: a host on one segment says nothing of an address on
// another. The channel closes once ctx ends.
func (s *Set) Watch(ctx context.Context) <-chan Change {
	out := make(chan Change)
	var wg sync.WaitGroup
	for _, r := range s.rs {
		in := r.Watch(ctx)
		wg.Go(func() {
			for ch := range in {
				s.mu.Lock()
				other := s.on[ch.IP] != nil && s.on[ch.IP] != r
				s.mu.Unlock()
				if other {
					continue
				}
				select {
				case out <- ch:
				case <-ctx.Done():
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// Refresh reads every interface again (see Resolver.Refresh).
func (s *Set) Refresh() error {
	var errs []error
	for _, r := range s.rs {
		errs = append(errs, r.Refresh())
	}
	return errors.Join(errs...)
}

// Close releases every Resolver.
func (s *Set) Close() error {
	var errs []error
	for _, r := range s.rs {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}
