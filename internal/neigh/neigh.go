// Package neigh finds the MAC addresses of backends on the balancer's
// interface and follows them as they change.
//
// The data path rewrites a packet's destination MAC to the backend's and
// transmits it without ever consulting the kernel, so the kernel's own
// neighbour machinery never runs for balanced traffic. Two paths make up
// for that:
//
//   - Resolve answers "what is this backend's MAC now": the kernel's
//     neighbour table when it holds a confirmed entry, otherwise an ARP
//     request (IPv4) or neighbour solicitation (IPv6) of our own, answered
//     in milliseconds rather than after the kernel's DELAY/PROBE timers. The
//     answer is then written to the kernel table as a managed entry
//     (NTF_EXT_MANAGED), which the kernel keeps revalidating although no
//     packet of its own uses it.
//   - Watch reports later changes from the kernel's neighbour events: a
//     backend's gratuitous ARP or unsolicited NA after a MAC change, or the
//     kernel's revalidation of a managed entry finding a new MAC or none.
//     Polling with Resolve could only notice a change on its next round.
package neigh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Change reports the current MAC of a neighbour on the Resolver's
// interface. MAC is nil when the kernel tried to reach the address and got
// no answer (the entry failed).
type Change struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// Resolver resolves and watches neighbours on one interface, in the network
// namespace that was current for the thread calling New.
type Resolver struct {
	// ifi is the interface as last read: Refresh replaces it when the
	// interface changes address or comes back with another index.
	ifi atomic.Pointer[net.Interface]
	log *slog.Logger
	ns  netns.NsHandle
	nl  *netlink.Handle
}

// retransmit is how long a probe waits for an answer before asking again,
// as the kernel's retrans_time does.
const retransmit = time.Second

// resubscribeDelay spaces out attempts to re-open the neighbour event
// subscription after it failed.
const resubscribeDelay = time.Second

// New returns a Resolver for the interface ifname. Its sockets live in the
// network namespace of the calling thread at the time of the call, whatever
// thread later uses them.
func New(ifname string, log *slog.Logger) (*Resolver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("neighbours on %s: open network namespace: %w", ifname, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("neighbours on %s: netlink: %w", ifname, err)
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("neighbours on %s: %w", ifname, err)
	}
	a := link.Attrs()
	if len(a.HardwareAddr) != 6 {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("neighbours on %s: not an Ethernet interface (hardware address %q)", ifname, a.HardwareAddr)
	}
	r := &Resolver{
		log: log.With("interface", ifname),
		ns:  ns,
		nl:  h,
	}
	r.ifi.Store(interfaceOf(a))
	return r, nil
}

func interfaceOf(a *netlink.LinkAttrs) *net.Interface {
	return &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}
}

func (r *Resolver) iface() *net.Interface { return r.ifi.Load() }

// Refresh reads the interface again, by name: its MAC (a bond that failed
// over, `ip link set address`) and its index (deleted and created again),
// so that probes go out from what it is now.
func (r *Resolver) Refresh() error {
	name := r.iface().Name
	link, err := r.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("neighbours on %s: %w", name, err)
	}
	r.ifi.Store(interfaceOf(link.Attrs()))
	return nil
}

// Close releases the Resolver's netlink handle and namespace reference.
// Channels from Watch end with their contexts, not with Close.
func (r *Resolver) Close() error {
	r.nl.Close()
	return r.ns.Close()
}

// Resolve returns ip's MAC on the Resolver's interface: from a confirmed
// kernel neighbour entry, or else from an ARP request or neighbour
// solicitation repeated every second until an answer or ctx's end. The
// answer is kept in the kernel table as a managed entry so that Watch hears
// of later changes.
func (r *Resolver) Resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
		return nil, fmt.Errorf("resolve %v on %s: not a unicast address", ip, r.iface().Name)
	}
	n, err := r.lookup(ip)
	if err != nil {
		return nil, fmt.Errorf("resolve %s on %s: %w", ip, r.iface().Name, err)
	}
	if n != nil && n.State&netlink.NUD_PERMANENT != 0 {
		// An administrator's static entry is the answer, and ours to leave
		// alone.
		return n.HardwareAddr, nil
	}
	if n != nil && n.State&netlink.NUD_REACHABLE != 0 {
		r.keep(ip, n.HardwareAddr, n.FlagsExt&netlink.NTF_EXT_MANAGED != 0)
		return n.HardwareAddr, nil
	}
	// Absent, stale, failed or still being resolved: a stale entry may be
	// exactly what changed, so ask the wire.
	start := time.Now()
	var mac net.HardwareAddr
	if ip.Is4() {
		mac, err = r.probeARP(ctx, ip)
	} else {
		mac, err = r.probeNDP(ctx, ip)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s on %s: %w", ip, r.iface().Name, err)
	}
	r.log.Debug("resolved neighbour", "ip", ip, "mac", mac.String(), "took", time.Since(start))
	r.keep(ip, mac, false)
	return mac, nil
}

// lookup returns the kernel's entry for ip on the interface, or nil.
func (r *Resolver) lookup(ip netip.Addr) (*netlink.Neigh, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	list, err := r.nl.NeighList(r.iface().Index, family)
	if err != nil {
		return nil, fmt.Errorf("list kernel neighbours: %w", err)
	}
	for i := range list {
		if a, ok := netip.AddrFromSlice(list[i].IP); ok && a.Unmap() == ip && list[i].Flags&netlink.NTF_PROXY == 0 {
			if len(list[i].HardwareAddr) != 6 {
				return nil, nil
			}
			return &list[i], nil
		}
	}
	return nil, nil
}

// keep writes ip → mac to the kernel table as a reachable, managed entry:
// the kernel then re-probes it on its own, and its events reach Watch. A
// failure costs only that, so it is logged rather than returned.
func (r *Resolver) keep(ip netip.Addr, mac net.HardwareAddr, alreadyManaged bool) {
	if alreadyManaged {
		return
	}
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	err := r.nl.NeighSet(&netlink.Neigh{
		LinkIndex:    r.iface().Index,
		Family:       family,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
		State:        netlink.NUD_REACHABLE,
		FlagsExt:     netlink.NTF_EXT_MANAGED,
	})
	if err != nil {
		r.log.Warn("cannot keep neighbour entry in the kernel table; MAC changes without a gratuitous announcement will go unnoticed",
			"ip", ip, "mac", mac.String(), "err", err)
	}
}

// probeARP broadcasts ARP requests for ip until a packet from ip names its
// MAC: a reply, or a request of its own, whose sender fields are as good.
func (r *Resolver) probeARP(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	src, err := r.sourceAddr(ip)
	if err != nil {
		return nil, err
	}
	var c *arp.Client
	err = r.inNetNS(func() error {
		var err error
		c, err = arp.Dial(r.iface())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open ARP socket: %w", err)
	}
	defer c.Close()
	req, err := arp.NewPacket(arp.OperationRequest, r.iface().HardwareAddr, src, ethernet.Broadcast, ip)
	if err != nil {
		return nil, fmt.Errorf("build ARP request: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()

	start := time.Now()
	for sent := 0; ; {
		if ctx.Err() != nil {
			return nil, noAnswer("ARP", sent, start, ctx)
		}
		if err := c.WriteTo(req, ethernet.Broadcast); err != nil {
			return nil, fmt.Errorf("send ARP request: %w", err)
		}
		sent++
		resend := time.Now().Add(retransmit)
		for ctx.Err() == nil {
			c.SetReadDeadline(earliest(ctx, resend))
			p, _, err := c.Read()
			if isTimeout(err) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read ARP: %w", err)
			}
			if p.SenderIP == ip && usableMAC(p.SenderHardwareAddr) {
				return p.SenderHardwareAddr, nil
			}
		}
	}
}

// sourceAddr picks the interface address an ARP request for ip should come
// from: one on ip's subnet, so the target answers and learns a usable
// mapping, else the first.
func (r *Resolver) sourceAddr(ip netip.Addr) (netip.Addr, error) {
	addrs, err := r.nl.AddrList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: r.iface().Index}}, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses: %w", err)
	}
	var first netip.Addr
	for _, a := range addrs {
		p, ok := netipPrefix(a.IPNet)
		if !ok {
			continue
		}
		if p.Contains(ip) {
			return p.Addr(), nil
		}
		if !first.IsValid() {
			first = p.Addr()
		}
	}
	if !first.IsValid() {
		return netip.Addr{}, errors.New("interface has no IPv4 address to send ARP requests from")
	}
	return first, nil
}

// probeNDP multicasts neighbour solicitations for ip to its solicited-node
// group until an advertisement for ip carries its MAC.
func (r *Resolver) probeNDP(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	// ndp names the interface as the zone of every address it sends to, and
	// Go turns a zone name into an index through a process-wide cache of
	// whatever namespace it last listed: with several namespaces in one
	// process "eth0" can map to the wrong interface. A numeric zone is taken
	// as the index itself.
	ifi := *r.iface()
	ifi.Name = strconv.Itoa(ifi.Index)
	var c *ndp.Conn
	err := r.inNetNS(func() error {
		var err error
		c, _, err = ndp.Listen(&ifi, ndp.LinkLocal)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open ICMPv6 socket: %w", err)
	}
	defer c.Close()
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return nil, err
	}
	ns := &ndp.NeighborSolicitation{
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: r.iface().HardwareAddr}},
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()

	start := time.Now()
	for sent := 0; ; {
		if ctx.Err() != nil {
			return nil, noAnswer("neighbour solicitation", sent, start, ctx)
		}
		if err := c.WriteTo(ns, nil, group); err != nil {
			return nil, fmt.Errorf("send neighbour solicitation: %w", err)
		}
		sent++
		resend := time.Now().Add(retransmit)
		for ctx.Err() == nil {
			c.SetReadDeadline(earliest(ctx, resend))
			m, _, _, err := c.ReadFrom()
			if isTimeout(err) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read ICMPv6: %w", err)
			}
			na, ok := m.(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != ip {
				continue
			}
			for _, o := range na.Options {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target && usableMAC(lla.Addr) {
					return lla.Addr, nil
				}
			}
		}
	}
}

func noAnswer(what string, sent int, start time.Time, ctx context.Context) error {
	return fmt.Errorf("no answer to %d %s request(s) in %v: %w", sent, what, time.Since(start).Round(time.Millisecond), context.Cause(ctx))
}

// inNetNS runs fn on a thread in the Resolver's namespace, so sockets fn
// opens belong there.
func (r *Resolver) inNetNS(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if orig.Equal(r.ns) {
			runtime.UnlockOSThread()
			errc <- fn()
			return
		}
		if err := netns.Set(r.ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Exiting while locked retires the thread in the wrong
			// namespace instead of reusing it.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Watch reports neighbour changes on the interface until ctx ends, then
// closes the channel. The first report for an address carries its current
// MAC (the kernel table is listed at the start); after that an address is
// reported when its MAC changes or its entry fails (MAC nil). A deleted
// entry is not reported: the kernel garbage-collects entries nobody uses,
// which says nothing about the host. If the event stream breaks (e.g. the
// socket overflowed) Watch subscribes again and lists the table anew, so no
// change is lost for good.
func (r *Resolver) Watch(ctx context.Context) <-chan Change {
	out := make(chan Change)
	go func() {
		defer close(out)
		last := make(map[netip.Addr]string)
		for ctx.Err() == nil {
			if err := r.watchOnce(ctx, last, out); err != nil {
				r.log.Warn("neighbour events interrupted; subscribing again", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(resubscribeDelay):
				}
			}
		}
	}()
	return out
}

// watchOnce runs one subscription until ctx ends (nil) or the subscription
// fails (its error).
func (r *Resolver) watchOnce(ctx context.Context, last map[netip.Addr]string, out chan<- Change) error {
	updates := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	errc := make(chan error, 1)
	err := netlink.NeighSubscribeWithOptions(updates, done, netlink.NeighSubscribeOptions{
		Namespace:    &r.ns,
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case errc <- err:
			default:
			}
		},
	})
	if err != nil {
		close(done)
		return fmt.Errorf("subscribe: %w", err)
	}
	defer func() {
		close(done)
		// The subscription's reader closes updates once done closes the
		// socket; until then it may be blocked sending to us.
		for range updates {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case u, ok := <-updates:
			if !ok {
				select {
				case err := <-errc:
					return err
				default:
					return errors.New("subscription closed")
				}
			}
			c, ok := r.change(u, last)
			if !ok {
				continue
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// change turns a kernel neighbour message into a Change, if it is one, and
// records it in last (address → MAC as reported).
func (r *Resolver) change(u netlink.NeighUpdate, last map[netip.Addr]string) (Change, bool) {
	n := u.Neigh
	if n.LinkIndex != r.iface().Index || (n.Family != unix.AF_INET && n.Family != unix.AF_INET6) || n.Flags&netlink.NTF_PROXY != 0 {
		return Change{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return Change{}, false
	}
	ip = ip.Unmap()
	if u.Type != unix.RTM_NEWNEIGH {
		return Change{}, false
	}
	prev, known := last[ip]
	switch {
	case n.State&netlink.NUD_FAILED != 0:
		if !known || prev == "" {
			return Change{}, false
		}
		last[ip] = ""
		return Change{IP: ip}, true
	case n.State&validStates != 0 && usableMAC(n.HardwareAddr):
		if known && prev == n.HardwareAddr.String() {
			return Change{}, false
		}
		last[ip] = n.HardwareAddr.String()
		return Change{IP: ip, MAC: n.HardwareAddr}, true
	}
	// INCOMPLETE, NONE: resolution under way, nothing known yet.
	return Change{}, false
}

// validStates are the states in which an entry's MAC is the kernel's
// current belief (the kernel's NUD_VALID without NOARP, whose entries carry
// no real neighbour).
const validStates = netlink.NUD_PERMANENT | netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE

func usableMAC(m net.HardwareAddr) bool {
	if len(m) != 6 {
		return false
	}
	zero, bcast := true, true
	for _, b := range m {
		zero = zero && b == 0
		bcast = bcast && b == 0xff
	}
	return !zero && !bcast && m[0]&1 == 0 // no multicast MAC either
}

func earliest(ctx context.Context, t time.Time) time.Time {
	if d, ok := ctx.Deadline(); ok && d.Before(t) {
		return d
	}
	return t
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
