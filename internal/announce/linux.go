package announce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// foreverLft is the kernel's infinite address lifetime.
const foreverLft = 0xffffffff

// Netlink manages addresses with rtnetlink in the caller's network
// namespace.
type Netlink struct{}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Add implements Addresses. IPv6 addresses skip duplicate address
// detection: a tentative address could not be used, and the address moving
// between hosts is the point.
func (Netlink) Add(dev string, v VIP) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: ipNet(v.Prefix), Label: v.Label}
	if v.Prefix.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if v.PreferredLft != nil {
		// The lifetimes go together: valid forever, preferred as asked.
		a.ValidLft = foreverLft
		a.PreferedLft = min(int(*v.PreferredLft/time.Second), foreverLft)
	}
	return netlink.AddrReplace(link, a)
}

// Del implements Addresses; an address already gone is not an error.
func (Netlink) Del(dev string, p netip.Prefix) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	err = netlink.AddrDel(link, &netlink.Addr{IPNet: ipNet(p)})
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return nil
	}
	return err
}

// RawSender sends announcements on raw sockets, opened per interface on
// first use in the caller's network namespace and kept until Close.
type RawSender struct {
	mu   sync.Mutex
	devs map[string]*device
}

// device is one interface as it was when its first socket was opened:
// later announcements may run on any thread, in any namespace.
type device struct {
	ifi *net.Interface
	arp *arp.Client
	ndp *ndp.Conn
}

// NewRawSender returns a RawSender with no sockets open yet.
func NewRawSender() *RawSender {
	return &RawSender{devs: map[string]*device{}}
}

// dropAll is a socket filter that accepts nothing: the sockets only send.
var dropAll = func() []bpf.RawInstruction {
	raw, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		panic(err)
	}
	return raw
}()

// Announce implements Sender.
func (s *RawSender) Announce(dev string, addr netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devs[dev]
	if d == nil {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		d = &device{ifi: ifi}
		s.devs[dev] = d
	}
	ifi := d.ifi
	if addr.Is4() {
		c := d.arp
		if c == nil {
			p, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: dropAll})
			if err != nil {
				return fmt.Errorf("arp socket: %w", err)
			}
			if c, err = arp.New(ifi, p); err != nil {
				p.Close()
				return fmt.Errorf("arp socket: %w", err)
			}
			d.arp = c
		}
		// A request with sender and target both the address, to the
		// broadcast address, updates every cache that has the address
		// (RFC 5227 §3), and is what keepalived sends.
		pkt, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, addr, ethernet.Broadcast, addr)
		if err != nil {
			return err
		}
		return c.WriteTo(pkt, ethernet.Broadcast)
	}
	c := d.ndp
	if c == nil {
		var err error
		if c, _, err = ndp.Listen(ifi, ndp.LinkLocal); err != nil {
			return fmt.Errorf("ndp socket: %w", err)
		}
		var f ipv6.ICMPFilter
		f.SetAll(true)
		if err := c.SetICMPFilter(&f); err != nil {
			c.Close()
			return fmt.Errorf("ndp socket: %w", err)
		}
		d.ndp = c
	}
	// Unsolicited, overriding, to all nodes (RFC 4861 §7.2.6).
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}},
	}
	return c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes())
}

// Close closes every socket.
func (s *RawSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for dev, d := range s.devs {
		if d.arp != nil {
			errs = append(errs, d.arp.Close())
		}
		if d.ndp != nil {
			errs = append(errs, d.ndp.Close())
		}
		delete(s.devs, dev)
	}
	return errors.Join(errs...)
}
