package vrrp

import (
	"net/netip"
	"time"
)

// Config is what one virtual router needs to speak VRRP. New trusts the
// ranges of its fields as documented here: the caller validates them
// where the user wrote them, with the place (internal/service).
type Config struct {
	// Name names the instance in logs, errors and events.
	Name string
	// VRID is the virtual router's id, 1..255.
	VRID uint8
	// Priority is 1..255; 255 is the address owner's, which takes over at
	// once and is never moved by tracked objects.
	Priority int
	// AdvertInt is the advertisement interval. VRRPv2 carries whole
	// seconds, 1 s to 255 s, and VRRPv3 centiseconds, 10 ms to 40.95 s;
	// New refuses an interval the version cannot carry.
	AdvertInt time.Duration
	// Version is 2 (RFC 3768) or 3 (RFC 5798).
	Version int
	// Preempt lets a higher priority take over from a lower master;
	// PreemptDelay holds that back for a while after startup.
	Preempt      bool
	PreemptDelay time.Duration
	// PassAuth turns on VRRPv2 simple-password authentication (keepalived's
	// auth_type PASS) with Password, of which the first 8 bytes count.
	PassAuth bool
	Password string
	// Addrs are the virtual addresses advertised, all of the family of the
	// Conn's local address.
	Addrs []netip.Addr
	// UnicastPeers, when set, receive the advertisements instead of the
	// multicast group; with CheckUnicastSrc, advertisements from other
	// sources are dropped.
	UnicastPeers    []netip.Addr
	CheckUnicastSrc bool
	// TrackInterfaces and TrackScripts are the objects whose state moves
	// the priority (SetInterface, SetScript).
	TrackInterfaces []Track
	TrackScripts    []Track
	// SkipCheckAdvAddr accepts an advertisement whose address list differs
	// from Addrs when it comes from the router the previous one came from
	// (keepalived's skip_check_adv_addr).
	SkipCheckAdvAddr bool
	// A master that hears a lower priority answers with an advertisement
	// at once unless LowerPrioNoAdvert; one that hears a higher priority
	// sends a last advertisement before yielding if HigherPrioSendAdvert.
	LowerPrioNoAdvert    bool
	HigherPrioSendAdvert bool
	// LowerPrioReannounce has a master that hears a lower priority call
	// Options.OnLowerPriority, for the addresses to be announced again
	// (keepalived's garp_lower_prio_repeat).
	LowerPrioReannounce bool
}

// Track is a tracked script or interface. While it is down, a negative
// Weight is added to the priority; while it is up, a positive one is. A
// Weight of 0 puts the instance in Fault while the object is down.
type Track struct {
	Name   string
	Weight int
}

// GroupConfig is a sync group: instances that change state together.
type GroupConfig struct {
	// Name names the group in logs and events.
	Name      string
	Instances []string
}
