package service

import (
	"net/netip"
	"time"
)

// VRRPInstance is one virtual router: the addresses it floats between
// balancers and how it competes for them.
type VRRPInstance struct {
	Name string
	// State is the initial state, "MASTER" or "BACKUP".
	State           string
	Interface       string
	VirtualRouterID int
	Priority        int
	AdvertInt       time.Duration
	// Version is the VRRP protocol version, 2 (RFC 3768) or 3 (RFC 5798).
	Version      int
	Preempt      bool
	PreemptDelay time.Duration
	Auth         *VRRPAuth
	VirtualIPs   []VirtualIP
	// SourceIP is the advertisement source (keepalived's unicast_src_ip or
	// mcast_src_ip); invalid means the interface's primary address.
	SourceIP netip.Addr
	// UnicastPeers, when set, replace multicast advertisements.
	UnicastPeers      []netip.Addr
	TrackScripts      []Track
	TrackInterfaces   []Track
	GARPMasterDelay   time.Duration
	GARPMasterRepeat  int
	GARPMasterRefresh time.Duration
	// GARPMasterRefreshRepeat is the announcements per address at each
	// refresh; 0 means keepalived's 1.
	GARPMasterRefreshRepeat int
	// GARPLowerPrioRepeat announcements per address, and as many again
	// GARPLowerPrioDelay later, go out when a master hears a lower
	// priority (keepalived's garp_lower_prio_repeat and _delay): the other
	// router believed itself master, and the link's ARP caches may point
	// at it. 0 sends none.
	GARPLowerPrioRepeat int
	GARPLowerPrioDelay  time.Duration
	// SkipCheckAdvAddr accepts an advertisement whose address list
	// differs from the configured one when it comes from the master the
	// previous one came from (keepalived's skip_check_adv_addr): a pair
	// whose virtual_ipaddress lists are changed one balancer at a time
	// then keeps one master.
	SkipCheckAdvAddr bool
	// DontTrackPrimary keeps the instance out of FAULT when its own
	// interface goes down (keepalived's dont_track_primary); by default
	// that interface is tracked like a track_interface of weight 0.
	DontTrackPrimary bool
	// CheckUnicastSrc drops unicast advertisements from an address that
	// is not one of UnicastPeers (keepalived's check_unicast_src).
	CheckUnicastSrc bool
	// A master that hears a lower priority answers with an advertisement
	// at once unless LowerPrioNoAdvert; one that hears a higher priority
	// sends a last advertisement before yielding if HigherPrioSendAdvert
	// (keepalived's lower_prio_no_advert and higher_prio_send_advert).
	LowerPrioNoAdvert    bool
	HigherPrioSendAdvert bool
	Notify               Notify
	Source               Pos
	// Keywords is where each keyword of the block was written, so that an
	// error about its value names its own line.
	Keywords Keywords `json:"-"`
}

// VRRPAuth is VRRPv2 simple-password authentication.
type VRRPAuth struct {
	// Type is "PASS"; keepalived's AH is not supported.
	Type string
	Pass string
}

// VirtualIP is one address a VRRP instance adds while master.
type VirtualIP struct {
	Prefix netip.Prefix
	Dev    string // empty means the instance's interface
	Label  string
	// PreferredLft is the address's preferred lifetime, keepalived's
	// preferred_lft; nil is the default: 0 (deprecated) for IPv6, forever
	// for IPv4. A deprecated address is never the source the kernel picks
	// for the balancer's own connections: a VIP /128 inside the real
	// servers' /64 would otherwise win the longest-prefix rule, and every
	// health check's answer would go to the real server's own loopback.
	PreferredLft *time.Duration
	Source       Pos
}

// Deprecated reports whether v is added with preferred_lft 0.
func (v VirtualIP) Deprecated() bool {
	if v.PreferredLft == nil {
		return v.Prefix.Addr().Is6()
	}
	return *v.PreferredLft == 0
}

// Track names a script or interface whose state moves the instance's
// priority by Weight (0 means failure puts the instance in FAULT).
type Track struct {
	Name   string
	Weight int
	Source Pos
}

// Notify holds the scripts run on state changes.
type Notify struct {
	Any    string // keepalived's notify: called for every transition
	Master string
	Backup string
	Fault  string
	Stop   string
	// User runs the scripts, as keepalived's "user [group]"; empty means
	// keepalived_script if that user exists, else root.
	User string
}

// SyncGroup makes instances change state together.
type SyncGroup struct {
	Name      string
	Instances []string
	Notify    Notify
	Source    Pos
}

// VRRPScript is a script whose exit status tracks instance health.
type VRRPScript struct {
	Name     string
	Script   string
	Interval time.Duration
	Timeout  time.Duration // 0 means the interval
	Weight   int
	Rise     int
	Fall     int
	// InitFail starts the script failed until it first rises; without it
	// the first run decides (keepalived's init_fail).
	InitFail bool
	User     string
	Source   Pos
	// Keywords is where each keyword of the block was written, so that an
	// error about its value names its own line.
	Keywords Keywords `json:"-"`
}
