package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xlb-project/xlb/internal/service"
)

// The YAML document's shape. Leaf types carry their own line so a bad
// value is reported where it is written, and the objects that hold one
// borrow it as their position.

type fileYAML struct {
	// Extends names a keepalived.conf whose services and VRRP this file
	// adds to (its bgp section); see docs/config.md.
	Extends    yString         `yaml:"extends,omitempty"`
	Global     *globalYAML     `yaml:"global,omitempty"`
	Services   []serviceYAML   `yaml:"services,omitempty"`
	Scripts    []scriptYAML    `yaml:"vrrp_scripts,omitempty"`
	VRRP       []instanceYAML  `yaml:"vrrp_instances,omitempty"`
	SyncGroups []syncGroupYAML `yaml:"vrrp_sync_groups,omitempty"`
	BGP        *bgpYAML        `yaml:"bgp,omitempty"`
}

type bgpYAML struct {
	LocalAS       yUint32       `yaml:"local_as"`
	RouterID      yAddr         `yaml:"router_id"`
	ListenPort    uint16        `yaml:"listen_port,omitempty"`
	HoldTime      *yDuration    `yaml:"hold_time,omitempty"`
	KeepaliveTime *yDuration    `yaml:"keepalive_time,omitempty"`
	ConnectRetry  *yDuration    `yaml:"connect_retry,omitempty"`
	GracefulLeave *yDuration    `yaml:"graceful_leave,omitempty"`
	Communities   []yCommunity  `yaml:"communities,omitempty"`
	MED           uint32        `yaml:"med,omitempty"`
	Peers         []bgpPeerYAML `yaml:"peers"`
	VIPs          []bgpVIPYAML  `yaml:"vips,omitempty"`
}

type bgpPeerYAML struct {
	Address      yAddr    `yaml:"address"`
	AS           uint32   `yaml:"as"`
	Port         uint16   `yaml:"port,omitempty"`
	Password     string   `yaml:"password,omitempty"`
	Multihop     uint8    `yaml:"multihop,omitempty"`
	LocalAddress *yAddr   `yaml:"local_address,omitempty"`
	Families     []string `yaml:"families,omitempty"`
}

type bgpVIPYAML struct {
	VIP         yAddr        `yaml:"vip"`
	Communities []yCommunity `yaml:"communities,omitempty"`
	MED         *uint32      `yaml:"med,omitempty"`
}

// yUint32 keeps its line, so a section can be placed by its first key.
type yUint32 struct {
	v    uint32
	line int
}

func (u *yUint32) UnmarshalYAML(n *yaml.Node) error {
	u.line = n.Line
	return n.Decode(&u.v)
}

func (u yUint32) MarshalYAML() (any, error) { return u.v, nil }

// yCommunity is a BGP community written AS:VALUE.
type yCommunity struct {
	v    service.Community
	line int
}

func (c *yCommunity) UnmarshalYAML(n *yaml.Node) error {
	c.line = n.Line
	s, err := scalar(n, "community")
	if err != nil {
		return err
	}
	if c.v, err = service.ParseCommunity(s); err != nil {
		return valueError(n, "%v", err)
	}
	return nil
}

func (c yCommunity) MarshalYAML() (any, error) { return c.v.String(), nil }

type globalYAML struct {
	RouterID    yString       `yaml:"router_id,omitempty"`
	FlapDamping *flapYAML     `yaml:"flap_damping,omitempty"`
	Timeouts    *timeoutsYAML `yaml:"timeouts,omitempty"`
}

type timeoutsYAML struct {
	TCP     *yDuration `yaml:"tcp,omitempty"`
	TCPFin  *yDuration `yaml:"tcp_fin,omitempty"`
	UDP     *yDuration `yaml:"udp,omitempty"`
	SynRecv *yDuration `yaml:"syn_recv,omitempty"`
	Close   *yDuration `yaml:"close,omitempty"`
}

type flapYAML struct {
	Changes  int       `yaml:"changes"`
	Window   yDuration `yaml:"window"`
	HoldDown yDuration `yaml:"hold_down"`
}

type serviceYAML struct {
	VIP         yAddr         `yaml:"vip"`
	Port        *uint16       `yaml:"port,omitempty"`
	Protocol    yProto        `yaml:"protocol"`
	Scheduler   string        `yaml:"scheduler,omitempty"`
	Forward     *forwardYAML  `yaml:"forward,omitempty"`
	Persistence *yDuration    `yaml:"persistence,omitempty"`
	DelayLoop   *yDuration    `yaml:"delay_loop,omitempty"`
	SorryServer *sorryYAML    `yaml:"sorry_server,omitempty"`
	Quorum      int           `yaml:"quorum,omitempty"`
	Hysteresis  int           `yaml:"hysteresis,omitempty"`
	QuorumUp    string        `yaml:"quorum_up,omitempty"`
	QuorumDown  string        `yaml:"quorum_down,omitempty"`
	QuorumUser  string        `yaml:"quorum_user,omitempty"`
	Omega       bool          `yaml:"omega,omitempty"`
	SlowStart   *yDuration    `yaml:"slow_start,omitempty"`
	VLAN        *yInt         `yaml:"vlan,omitempty"`
	Backends    []backendYAML `yaml:"backends"`
}

type sorryYAML struct {
	Address yAddr        `yaml:"address"`
	Port    *uint16      `yaml:"port,omitempty"`
	Inhibit bool         `yaml:"inhibit,omitempty"`
	Forward *forwardYAML `yaml:"forward,omitempty"`
}

// forwardYAML is how real servers are reached (keepalived's lvs_method):
// on a service, the default of its backends and sorry server; on one of
// them, its own.
type forwardYAML struct {
	Method yMethod `yaml:"method"`
	Encap  *yEncap `yaml:"encap,omitempty"`
	Port   *yInt   `yaml:"port,omitempty"`
	Csum   bool    `yaml:"csum,omitempty"`
}

// yMethod is route (DR) or tunnel (TUN).
type yMethod struct {
	v    service.Method
	set  bool
	line int
}

func (m *yMethod) UnmarshalYAML(n *yaml.Node) error {
	m.line = n.Line
	s, err := scalar(n, "method")
	if err != nil {
		return err
	}
	switch s {
	case "route":
		m.v = service.Route
	case "tunnel":
		m.v = service.Tunnel
	case "nat", "masq":
		return valueError(n, "method %s is not supported by xlb: the balancer never sees the replies NAT must rewrite; use route or tunnel", s)
	default:
		return valueError(n, "%q is not a forwarding method (route or tunnel)", s)
	}
	m.set = true
	return nil
}

func (m yMethod) MarshalYAML() (any, error) { return strings.ToLower(m.v.String()), nil }

// yEncap is a tunnel's outer header: ipip or gue.
type yEncap struct {
	v    service.Encap
	line int
}

func (e *yEncap) UnmarshalYAML(n *yaml.Node) error {
	e.line = n.Line
	s, err := scalar(n, "encap")
	if err != nil {
		return err
	}
	switch s {
	case "ipip":
		e.v = service.IPIP
	case "gue":
		e.v = service.GUE
	case "gre":
		return valueError(n, "encap gre is not supported by xlb, which tunnels with ipip or gue")
	default:
		return valueError(n, "%q is not a tunnel encapsulation (ipip or gue)", s)
	}
	return nil
}

func (e yEncap) MarshalYAML() (any, error) { return e.v.String(), nil }

type backendYAML struct {
	Address          yAddr        `yaml:"address"`
	Port             *uint16      `yaml:"port,omitempty"`
	Weight           *yInt        `yaml:"weight,omitempty"`
	Forward          *forwardYAML `yaml:"forward,omitempty"`
	InhibitOnFailure bool         `yaml:"inhibit_on_failure,omitempty"`
	Checks           []checkYAML  `yaml:"checks,omitempty"`
	NotifyUp         string       `yaml:"notify_up,omitempty"`
	NotifyDown       string       `yaml:"notify_down,omitempty"`
	NotifyUser       string       `yaml:"notify_user,omitempty"`
}

type checkYAML struct {
	Type             yCheckKind `yaml:"type"`
	ConnectIP        *yAddr     `yaml:"connect_ip,omitempty"`
	ConnectPort      uint16     `yaml:"connect_port,omitempty"`
	BindTo           *yAddr     `yaml:"bindto,omitempty"`
	BindPort         uint16     `yaml:"bind_port,omitempty"`
	BindIf           string     `yaml:"bind_if,omitempty"`
	ConnectTimeout   *yDuration `yaml:"connect_timeout,omitempty"`
	Retry            *int       `yaml:"retry,omitempty"`
	DelayBeforeRetry *yDuration `yaml:"delay_before_retry,omitempty"`
	Rise             int        `yaml:"rise,omitempty"`
	Alpha            bool       `yaml:"alpha,omitempty"`
	LogAllFailures   bool       `yaml:"log_all_failures,omitempty"`
	Warmup           *yDuration `yaml:"warmup,omitempty"`
	DelayLoop        *yDuration `yaml:"delay_loop,omitempty"`
	URLs             []urlYAML  `yaml:"urls,omitempty"`
	VirtualHost      string     `yaml:"virtualhost,omitempty"`
	EnableSNI        bool       `yaml:"enable_sni,omitempty"`
	MiscPath         string     `yaml:"misc_path,omitempty"`
	MiscTimeout      *yDuration `yaml:"misc_timeout,omitempty"`
	MiscDynamic      bool       `yaml:"misc_dynamic,omitempty"`
	User             string     `yaml:"user,omitempty"`
}

type urlYAML struct {
	Path        yString  `yaml:"path"`
	Digest      string   `yaml:"digest,omitempty"`
	StatusCodes []string `yaml:"status_codes,omitempty"`
	VirtualHost string   `yaml:"virtualhost,omitempty"`
}

type instanceYAML struct {
	Name              yString         `yaml:"name"`
	State             string          `yaml:"state,omitempty"`
	Interface         string          `yaml:"interface"`
	VirtualRouterID   int             `yaml:"virtual_router_id"`
	Priority          *yInt           `yaml:"priority,omitempty"`
	AdvertInt         *yDuration      `yaml:"advert_int,omitempty"`
	Version           *int            `yaml:"version,omitempty"`
	Preempt           *bool           `yaml:"preempt,omitempty"`
	PreemptDelay      *yDuration      `yaml:"preempt_delay,omitempty"`
	Auth              *authYAML       `yaml:"authentication,omitempty"`
	VirtualIPs        []virtualIPYAML `yaml:"virtual_ipaddress"`
	SourceIP          *yAddr          `yaml:"source_ip,omitempty"`
	UnicastPeers      []yAddr         `yaml:"unicast_peers,omitempty"`
	TrackScripts      []trackYAML     `yaml:"track_scripts,omitempty"`
	TrackInterfaces   []trackYAML     `yaml:"track_interfaces,omitempty"`
	GARPMasterDelay   *yDuration      `yaml:"garp_master_delay,omitempty"`
	GARPMasterRepeat  *int            `yaml:"garp_master_repeat,omitempty"`
	GARPMasterRefresh *yDuration      `yaml:"garp_master_refresh,omitempty"`
	GARPRefreshRepeat int             `yaml:"garp_master_refresh_repeat,omitempty"`
	GARPLowerRepeat   int             `yaml:"garp_lower_prio_repeat,omitempty"`
	GARPLowerDelay    *yDuration      `yaml:"garp_lower_prio_delay,omitempty"`
	SkipCheckAdvAddr  bool            `yaml:"skip_check_adv_addr,omitempty"`
	DontTrackPrimary  bool            `yaml:"dont_track_primary,omitempty"`
	CheckUnicastSrc   bool            `yaml:"check_unicast_src,omitempty"`
	LowerPrioNoAdvert bool            `yaml:"lower_prio_no_advert,omitempty"`
	HigherPrioAdvert  bool            `yaml:"higher_prio_send_advert,omitempty"`
	Notify            *notifyYAML     `yaml:"notify,omitempty"`
}

type authYAML struct {
	Type string `yaml:"type"`
	Pass string `yaml:"pass"`
}

type virtualIPYAML struct {
	Prefix yPrefix `yaml:"address"`
	Dev    string  `yaml:"dev,omitempty"`
	Label  string  `yaml:"label,omitempty"`
	// PreferredLft is keepalived's preferred_lft (0s deprecates the
	// address: never a source for the balancer's own connections).
	PreferredLft *yDuration `yaml:"preferred_lft,omitempty"`
}

type trackYAML struct {
	Name   yString `yaml:"name"`
	Weight *int    `yaml:"weight,omitempty"`
}

type notifyYAML struct {
	Any    string `yaml:"any,omitempty"`
	Master string `yaml:"master,omitempty"`
	Backup string `yaml:"backup,omitempty"`
	Fault  string `yaml:"fault,omitempty"`
	Stop   string `yaml:"stop,omitempty"`
	User   string `yaml:"user,omitempty"`
}

type syncGroupYAML struct {
	Name      yString     `yaml:"name"`
	Instances []string    `yaml:"instances"`
	Notify    *notifyYAML `yaml:"notify,omitempty"`
}

type scriptYAML struct {
	Name     yString    `yaml:"name"`
	Script   string     `yaml:"script"`
	Interval *yDuration `yaml:"interval,omitempty"`
	Timeout  *yDuration `yaml:"timeout,omitempty"`
	Weight   int        `yaml:"weight,omitempty"`
	Rise     *int       `yaml:"rise,omitempty"`
	Fall     *int       `yaml:"fall,omitempty"`
	InitFail bool       `yaml:"init_fail,omitempty"`
	User     string     `yaml:"user,omitempty"`
}

// valueError reports a bad scalar the way yaml.v3 reports type errors, so
// that decoding carries on and every problem is listed with its line.
func valueError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

func scalar(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", valueError(n, "%s must be a single value", what)
	}
	return n.Value, nil
}

type yString struct {
	v    string
	line int
}

func (s *yString) UnmarshalYAML(n *yaml.Node) error {
	v, err := scalar(n, "value")
	s.v, s.line = v, n.Line
	return err
}

func (s yString) MarshalYAML() (any, error) { return s.v, nil }
func (s yString) IsZero() bool              { return s.v == "" }

type yAddr struct {
	v    netip.Addr
	line int
}

func (a *yAddr) UnmarshalYAML(n *yaml.Node) error {
	a.line = n.Line
	s, err := scalar(n, "address")
	if err != nil {
		return err
	}
	v, err := netip.ParseAddr(s)
	if err != nil || v.Zone() != "" {
		return valueError(n, "%q is not an IP address", s)
	}
	a.v = v
	return nil
}

func (a yAddr) MarshalYAML() (any, error) { return a.v.String(), nil }

type yPrefix struct {
	v    netip.Prefix
	line int
}

func (p *yPrefix) UnmarshalYAML(n *yaml.Node) error {
	p.line = n.Line
	s, err := scalar(n, "address")
	if err != nil {
		return err
	}
	if v, err := netip.ParsePrefix(s); err == nil {
		p.v = v
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return valueError(n, "%q is not an IP address or prefix", s)
	}
	p.v = netip.PrefixFrom(a, a.BitLen())
	return nil
}

func (p yPrefix) MarshalYAML() (any, error) {
	if p.v.IsSingleIP() {
		return p.v.Addr().String(), nil
	}
	return p.v.String(), nil
}

// yInt is an integer that keeps its line, for errors about its value.
type yInt struct {
	v    int
	line int
}

func (i *yInt) UnmarshalYAML(n *yaml.Node) error {
	i.line = n.Line
	return n.Decode(&i.v)
}

func (i yInt) MarshalYAML() (any, error) { return i.v, nil }

// yDuration is a Go duration string such as "3s" or "500ms".
type yDuration struct {
	v    time.Duration
	line int
}

func (d *yDuration) UnmarshalYAML(n *yaml.Node) error {
	d.line = n.Line
	s, err := scalar(n, "duration")
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return valueError(n, "%q is not a duration (write e.g. 3s or 500ms)", s)
	}
	d.v = v
	return nil
}

func (d yDuration) MarshalYAML() (any, error) { return d.v.String(), nil }

func dur(d time.Duration) *yDuration { return &yDuration{v: d} }

type yProto struct {
	v    string
	line int
}

func (p *yProto) UnmarshalYAML(n *yaml.Node) error {
	p.line = n.Line
	s, err := scalar(n, "protocol")
	p.v = s
	return err
}

func (p yProto) MarshalYAML() (any, error) { return p.v, nil }

type yCheckKind struct {
	v    string
	line int
}

func (k *yCheckKind) UnmarshalYAML(n *yaml.Node) error {
	k.line = n.Line
	s, err := scalar(n, "check type")
	k.v = s
	return err
}

func (k yCheckKind) MarshalYAML() (any, error) { return k.v, nil }
