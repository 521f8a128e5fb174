package neigh

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// resolver is the part of *Resolver a Cache uses; tests give it a fake.
type resolver interface {
	Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error)
}

// Cache keeps the MACs of the addresses a caller forwards to. An address
// that does not answer stays unknown (the caller keeps it out of service)
// until a later Resolve finds it; a neighbour entry that expires forgets
// nothing, since it says nothing about the host behind it.
type Cache struct {
	res     resolver
	timeout time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	macs map[netip.Addr]net.HardwareAddr
}

// NewCache returns an empty Cache resolving through res (a *Resolver),
// each address bounded by timeout.
func NewCache(res resolver, timeout time.Duration, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{res: res, timeout: timeout, log: log, macs: map[netip.Addr]net.HardwareAddr{}}
}

// Resolve resolves, in parallel, every one of addrs whose MAC is not known
// yet, and returns once each has answered or timed out.
func (c *Cache) Resolve(ctx context.Context, addrs []netip.Addr) {
	todo := c.missing(addrs)
	var wg sync.WaitGroup
	for _, a := range todo {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			mac, err := c.res.Resolve(rctx, a)
			if err != nil {
				c.log.Warn("backend unresolved: it takes no traffic until its MAC is known", "backend", a, "err", err)
				return
			}
			c.mu.Lock()
			c.macs[a] = mac
			c.mu.Unlock()
		})
	}
	wg.Wait()
}

// Missing reports whether the MAC of some of addrs is unknown.
func (c *Cache) Missing(addrs []netip.Addr) bool {
	return len(c.missing(addrs)) > 0
}

func (c *Cache) missing(addrs []netip.Addr) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []netip.Addr
	for _, a := range addrs {
		if c.macs[a] == nil {
			out = append(out, a)
		}
	}
	return out
}

// Update takes a Change from Watch for one of addrs: a known address with
// a new MAC is updated, and Update returns the MAC it had. Any other
// change (an address not in addrs, an entry going away, the same MAC)
// leaves the cache as it was and returns false.
func (c *Cache) Update(ch Change, addrs []netip.Addr) (old net.HardwareAddr, changed bool) {
	if ch.MAC == nil || !slices.Contains(addrs, ch.IP) {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old = c.macs[ch.IP]
	if slices.Equal(old, ch.MAC) {
		return nil, false
	}
	c.macs[ch.IP] = ch.MAC
	return old, true
}

// MACs returns a copy of the known MACs.
func (c *Cache) MACs() map[netip.Addr]net.HardwareAddr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.macs)
}
