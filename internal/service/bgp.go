package service

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BGP is the bgp section: the speaker that announces the VIPs to routers
// so that several balancers share them by ECMP (see package bgp for when a
// VIP is announced).
type BGP struct {
	// LocalAS is this balancer's autonomous system.
	LocalAS uint32
	// RouterID is the BGP identifier, an IPv4 address.
	RouterID netip.Addr
	// ListenPort, when set, accepts sessions the peers open; zero leaves
	// every session to be opened from here, so no port is bound.
	ListenPort uint16
	// HoldTime, KeepaliveTime and ConnectRetry are every session's timers
	// (RFC 4271 section 10).
	HoldTime      time.Duration
	KeepaliveTime time.Duration
	ConnectRetry  time.Duration
	// GracefulLeave is how long a VIP that this balancer gives up (stop,
	// drain, reload) stays announced with GRACEFUL_SHUTDOWN before it is
	// withdrawn: the time the routers get to move its flows elsewhere.
	GracefulLeave time.Duration
	// Communities and MED go with every VIP a VIPs entry does not
	// override.
	Communities []Community
	MED         uint32
	Peers       []BGPPeer
	VIPs        []BGPVIP
	Source      Pos
}

// BGP defaults: RFC 4271's hold time and its keepalive of a third of it; a
// connect retry far below the RFC's 120 s, since a balancer that cannot
// reach its router carries no traffic meanwhile.
const (
	DefaultBGPHoldTime      = 90 * time.Second
	DefaultBGPKeepaliveTime = 30 * time.Second
	DefaultBGPConnectRetry  = 5 * time.Second
	DefaultBGPGracefulLeave = 5 * time.Second
)

// Family is an address family a BGP session carries.
type Family string

// The families xlb announces: unicast routes for IPv4 and IPv6 VIPs.
const (
	IPv4Unicast Family = "ipv4"
	IPv6Unicast Family = "ipv6"
)

// BGPPeer is one router this balancer speaks BGP with.
type BGPPeer struct {
	Address netip.Addr
	AS      uint32
	// Port is the peer's BGP port (179 if zero).
	Port uint16
	// Password turns on TCP MD5 signatures (RFC 2385).
	Password string
	// Multihop is the TTL of an eBGP session to a peer that is not on a
	// connected network; zero means directly connected.
	Multihop uint8
	// LocalAddress is the source of the session (the kernel's choice if
	// unset); it is the next hop of every announced VIP.
	LocalAddress netip.Addr
	// Families are the address families the session carries; by default
	// the peer address's own.
	Families []Family
	Source   Pos
}

// BGPVIP overrides the attributes one VIP is announced with.
type BGPVIP struct {
	VIP         netip.Addr
	Communities []Community
	// MED replaces the section's MED when set.
	MED    *uint32
	Source Pos
}

// Community is a BGP community (RFC 1997), written AS:VALUE.
type Community uint32

// GracefulShutdown is the GRACEFUL_SHUTDOWN well-known community (RFC 8326).
const GracefulShutdown Community = 0xFFFF0000

// ParseCommunity parses "AS:VALUE" with both halves below 65536.
func ParseCommunity(s string) (Community, error) {
	hi, lo, ok := strings.Cut(s, ":")
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q is not AS:VALUE with both below 65536", s)
	}
	return Community(a<<16 | b), nil
}

// String returns "AS:VALUE".
func (c Community) String() string { return fmt.Sprintf("%d:%d", c>>16, c&0xFFFF) }

// PeerFamilies returns the families of p: as configured, else the family
// of its address.
func (p BGPPeer) PeerFamilies() []Family {
	if len(p.Families) > 0 {
		return p.Families
	}
	if p.Address.Is4() {
		return []Family{IPv4Unicast}
	}
	return []Family{IPv6Unicast}
}

// Attrs returns the communities and MED a VIP is announced with.
func (b *BGP) Attrs(vip netip.Addr) ([]Community, uint32) {
	for _, v := range b.VIPs {
		if v.VIP == vip {
			med := b.MED
			if v.MED != nil {
				med = *v.MED
			}
			if v.Communities != nil {
				return v.Communities, med
			}
			return b.Communities, med
		}
	}
	return b.Communities, b.MED
}

// bgp checks the bgp section against itself and the services.
func (v *validator) bgp(c *Config) {
	b := c.BGP
	if b == nil {
		return
	}
	if b.LocalAS == 0 {
		v.add(b.Source, "bgp: local_as is missing")
	}
	if !b.RouterID.Is4() {
		v.add(b.Source, "bgp: router_id must be an IPv4 address (got %q)", addrString(b.RouterID))
	}
	if b.HoldTime != 0 && b.HoldTime < 3*time.Second {
		v.add(b.Source, "bgp: hold_time %s must be 0 or at least 3s (RFC 4271)", b.HoldTime)
	}
	if b.HoldTime%time.Second != 0 || b.KeepaliveTime%time.Second != 0 || b.ConnectRetry%time.Second != 0 {
		v.add(b.Source, "bgp: hold_time, keepalive_time and connect_retry are whole seconds")
	}
	if b.KeepaliveTime <= 0 || (b.HoldTime != 0 && b.KeepaliveTime >= b.HoldTime) {
		v.add(b.Source, "bgp: keepalive_time %s must be positive and below hold_time %s", b.KeepaliveTime, b.HoldTime)
	}
	if b.ConnectRetry <= 0 || b.GracefulLeave < 0 {
		v.add(b.Source, "bgp: connect_retry %s must be positive and graceful_leave %s not negative", b.ConnectRetry, b.GracefulLeave)
	}
	if len(b.Peers) == 0 {
		v.add(b.Source, "bgp: has no peers")
	}
	seen := map[netip.Addr]Pos{}
	for _, p := range b.Peers {
		name := "bgp: peer " + addrString(p.Address)
		if !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsMulticast() {
			v.add(p.Source, "%s: address is not a unicast address", name)
			continue
		}
		if prev, dup := seen[p.Address]; dup {
			v.add(p.Source, "%s: duplicate of the peer at %s", name, prev)
		}
		seen[p.Address] = p.Source
		if p.AS == 0 {
			v.add(p.Source, "%s: as is missing", name)
		}
		if p.LocalAddress.IsValid() && p.LocalAddress.Is4() != p.Address.Is4() {
			v.add(p.Source, "%s: local_address %s is of another family", name, p.LocalAddress)
		}
		for _, f := range p.Families {
			if f != IPv4Unicast && f != IPv6Unicast {
				v.add(p.Source, "%s: unknown family %q (want ipv4 or ipv6)", name, f)
			}
		}
	}
	vips := map[netip.Addr]bool{}
	for _, s := range c.Services {
		vips[s.VIP] = true
	}
	families := map[bool]bool{}
	for _, p := range b.Peers {
		for _, f := range p.PeerFamilies() {
			families[f == IPv4Unicast] = true
		}
	}
	for _, vip := range slices.SortedFunc(maps.Keys(vips), netip.Addr.Compare) {
		if len(b.Peers) > 0 && !families[vip.Is4()] {
			v.add(b.Source, "bgp: vip %s: no peer carries its family", vip)
		}
	}
	for _, x := range b.VIPs {
		if !vips[x.VIP] {
			v.add(x.Source, "bgp: vip %s is the VIP of no service", addrString(x.VIP))
		}
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
