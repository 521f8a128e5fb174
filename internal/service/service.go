// Package service holds xlb's configuration model: the virtual services it
// balances, their backends and health checks, and the VRRP instances that
// float the addresses. Both configuration readers (native YAML and
// keepalived.conf) produce this model; the daemon, balancer, health checker
// and VRRP consume it. The package does no I/O.
package service

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is one complete configuration: what xlb serves and announces.
type Config struct {
	Global     Global
	Services   []Service
	VRRP       []VRRPInstance
	SyncGroups []SyncGroup
	Scripts    []VRRPScript
	// BGP, when set, announces the VIPs to routers (the bgp section).
	BGP *BGP `json:",omitempty"`
}

// RealServerAddrs returns the distinct addresses of every direct-routing
// real and sorry server of c, sorted: the hosts whose MACs the balancer
// forwards to.
func (c *Config) RealServerAddrs() []netip.Addr {
	return c.serverAddrs(Route)
}

// TunnelAddrs returns the distinct addresses of every tunnel real and
// sorry server of c, sorted: the hosts the balancer needs a source
// address toward.
func (c *Config) TunnelAddrs() []netip.Addr {
	return c.serverAddrs(Tunnel)
}

func (c *Config) serverAddrs(m Method) []netip.Addr {
	var out []netip.Addr
	for _, s := range c.Services {
		for _, b := range s.Backends {
			if b.Forward.Method == m {
				out = append(out, b.Addr)
			}
		}
		if s.SorryServer != nil && s.SorryServer.Forward.Method == m {
			out = append(out, s.SorryServer.Addr)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// VIPs returns every virtual address of c: the services' and the VRRP
// instances'.
func (c *Config) VIPs() []netip.Addr {
	var out []netip.Addr
	for _, s := range c.Services {
		out = append(out, s.VIP.Unmap())
	}
	for _, in := range c.VRRP {
		for _, v := range in.VirtualIPs {
			out = append(out, v.Prefix.Addr().Unmap())
		}
	}
	return out
}

// Service returns the service of c with key k.
func (c *Config) Service(k ServiceKey) (Service, bool) {
	i := slices.IndexFunc(c.Services, func(s Service) bool { return s.Key() == k })
	if i < 0 {
		return Service{}, false
	}
	return c.Services[i], true
}

// Backend returns the backend of s at addr.
func (s Service) Backend(addr netip.AddrPort) (Backend, bool) {
	i := slices.IndexFunc(s.Backends, func(b Backend) bool { return b.AddrPort() == addr })
	if i < 0 {
		return Backend{}, false
	}
	return s.Backends[i], true
}

// Global holds settings that apply to the whole host.
type Global struct {
	// RouterID names this balancer. keepalived puts it in its e-mail
	// alerts, which xlb does not send; `xlb check` shows it.
	RouterID string
	// FlapDamping holds down backends whose health flaps; the zero value
	// is off, as keepalived has none.
	FlapDamping FlapDamping
	// Timeouts are the flow table's lifetimes, IPVS's (ipvsadm --set);
	// keepalived.conf has no keyword for them.
	Timeouts Timeouts
	Source   Pos
}

// Timeouts are how long the data path keeps following a connection after
// its last packet, by state, as IPVS times out its connections. A zero
// field takes IPVS's default: 900s, 120s, 300s, 60s and 10s.
type Timeouts struct {
	TCP     time.Duration // ESTABLISHED (ipvsadm --set tcp)
	TCPFin  time.Duration // FIN_WAIT and TIME_WAIT (ipvsadm --set tcpfin)
	UDP     time.Duration // UDP (ipvsadm --set udp)
	SynRecv time.Duration // a connection that has sent only SYNs
	Close   time.Duration // a connection that was reset
	Source  Pos
}

// MaxTimeout bounds each of Timeouts.
const MaxTimeout = 365 * 24 * time.Hour

// timeoutNames are the names of Timeouts' fields in YAML and on the
// command line, in ipvsadm's order.
var timeoutNames = []string{"tcp", "tcp_fin", "udp", "syn_recv", "close"}

// fields returns pointers to t's durations in timeoutNames' order.
func (t *Timeouts) fields() []*time.Duration {
	return []*time.Duration{&t.TCP, &t.TCPFin, &t.UDP, &t.SynRecv, &t.Close}
}

// Override returns t with every field that o sets taken from o.
func (t Timeouts) Override(o Timeouts) Timeouts {
	of := o.fields()
	for i, f := range t.fields() {
		if *of[i] != 0 {
			*f = *of[i]
		}
	}
	return t
}

// ParseTimeouts reads the command line's form of Timeouts: a
// comma-separated list of name=duration, with names tcp, tcp_fin, udp,
// syn_recv and close, e.g. "tcp=1h,udp=30s". Fields not named stay zero.
func ParseTimeouts(s string) (Timeouts, error) {
	var t Timeouts
	if strings.TrimSpace(s) == "" {
		return t, nil
	}
	fields := t.fields()
	for _, kv := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		i := slices.Index(timeoutNames, name)
		if !ok || i < 0 {
			return Timeouts{}, fmt.Errorf("timeouts: %q: want NAME=DURATION with NAME one of %s", kv, strings.Join(timeoutNames, ", "))
		}
		d, err := time.ParseDuration(val)
		if err != nil {
			return Timeouts{}, fmt.Errorf("timeouts: %s: %q is not a duration (write e.g. 300s or 15m)", name, val)
		}
		if d <= 0 || d > MaxTimeout {
			return Timeouts{}, fmt.Errorf("timeouts: %s: %s is out of range (0, %s]", name, d, MaxTimeout)
		}
		*fields[i] = d
	}
	return t, nil
}

// FlapDamping holds a backend down when its health check changes state
// more than Changes times within Window, until HoldDown has passed
// without a further change.
type FlapDamping struct {
	Changes  int
	Window   time.Duration
	HoldDown time.Duration
	Source   Pos
}

// On reports whether damping is configured.
func (f FlapDamping) On() bool { return f != (FlapDamping{Source: f.Source}) }

// Proto is the transport protocol of a service.
type Proto uint8

// Protocols a service can balance. The zero value is invalid so that a
// forgotten protocol is caught by validation instead of defaulting silently.
const (
	TCP Proto = iota + 1
	UDP
)

// String returns "tcp" or "udp".
func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProto parses a protocol name, case-insensitively.
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp or udp)", s)
}

// ServiceKey identifies a service: what the data path matches a packet on.
type ServiceKey struct {
	VIP   netip.Addr
	Port  uint16 // 0 matches every port of VIP
	Proto Proto
}

// String formats the key as "192.0.2.10:80/tcp" or "[2001:db8::1]:80/tcp".
func (k ServiceKey) String() string {
	return netip.AddrPortFrom(k.VIP, k.Port).String() + "/" + k.Proto.String()
}

// Service is one virtual service: traffic to VIP:Port/Proto spread over
// Backends by direct routing.
type Service struct {
	VIP   netip.Addr
	Port  uint16 // 0 = all ports; requires Persistence
	Proto Proto
	// Scheduler is the scheduler name as written (an IPVS name such as
	// "wrr", or "maglev"); SchedulerPlan says how xlb serves it.
	Scheduler string
	// Persistence > 0 makes every connection of a client address go to the
	// same backend (the data path hashes on the source address only).
	Persistence time.Duration
	// DelayLoop is the service's health-check interval; checks inherit it
	// unless they set their own.
	DelayLoop   time.Duration
	SorryServer *SorryServer
	// Quorum, when set, is the total weight of live backends the service
	// needs (keepalived's quorum): below it, less Hysteresis, the quorum
	// is lost, and it is gained again at it plus Hysteresis. A lost
	// quorum hands new connections to the sorry server, if there is one,
	// and runs QuorumDown; gaining it runs QuorumUp; both as QuorumUser.
	// Unset, the service loses it when no backend is up.
	Quorum     int
	Hysteresis int
	QuorumUp   string
	QuorumDown string
	QuorumUser string
	// Omega runs, when xlb stops, the notify_down scripts of the backends
	// still up and quorum_down if the quorum is held (keepalived's omega).
	Omega    bool
	Backends []Backend
	Source   Pos
	// Keywords is where each keyword of the block was written, so that an
	// error about its value names its own line.
	Keywords Keywords `json:"-"`

	// SlowStart, when set, ramps a backend that comes back up from a
	// small share of new flows to its full weight over this window,
	// rather than handing it its whole share at once (an xlb extension;
	// 0, the default, is keepalived's behaviour).
	SlowStart time.Duration

	// VLAN limits the service to frames tagged with this 802.1Q VLAN id,
	// so that a VIP reachable from several VLANs on one interface is
	// served on one of them; frames of other VLANs, or untagged, reach
	// the balancer's own stack (an xlb extension, YAML only; 0, the
	// default, takes every frame). Left out of the model's JSON when 0,
	// as most services have none.
	VLAN int `json:",omitempty"`
}

// MaxVLAN is the highest VLAN id 802.1Q assigns (4095 is reserved).
const MaxVLAN = 4094

// Key returns the service's identity.
func (s *Service) Key() ServiceKey {
	return ServiceKey{VIP: s.VIP, Port: s.Port, Proto: s.Proto}
}

// SorryServer receives the traffic of a service whose backends are all down.
type SorryServer struct {
	Addr    netip.Addr
	Port    uint16
	Inhibit bool // keepalived's sorry_server_inhibit
	// Forward is how the sorry server is reached (sorry_server_lvs_method).
	Forward Forward `json:",omitzero"`
	Source  Pos
}

// AddrPort returns the sorry server's address and port.
func (s *SorryServer) AddrPort() netip.AddrPort { return netip.AddrPortFrom(s.Addr, s.Port) }

// Backend is one real server of a service.
type Backend struct {
	Addr netip.Addr
	// Port is the real server's port. Direct routing does not rewrite ports,
	// so it always equals the service port.
	Port   uint16
	Weight int
	// Forward is how the backend is reached: the virtual server's
	// lvs_method unless the real server sets its own.
	Forward Forward `json:",omitzero"`
	// InhibitOnFailure keeps a failed backend at weight 0 (existing flows
	// drain) instead of removing it.
	InhibitOnFailure bool
	// Checks must all pass for the backend to be up; none means always up.
	Checks []Check
	// NotifyUp and NotifyDown run when the backend's health checks take
	// it up or down, as NotifyUser (keepalived's "user [group]"; empty
	// means keepalived_script if that user exists, else root).
	NotifyUp   string
	NotifyDown string
	NotifyUser string
	Source     Pos
	// Keywords is where each keyword of the block was written, so that an
	// error about its value names its own line.
	Keywords Keywords `json:"-"`
}

// AddrPort returns the backend's address and port.
func (b *Backend) AddrPort() netip.AddrPort { return netip.AddrPortFrom(b.Addr, b.Port) }

// CheckKind says how a backend is probed.
type CheckKind uint8

// Health-check kinds, named after keepalived's checker blocks.
const (
	CheckTCP  CheckKind = iota + 1 // TCP_CHECK: a TCP connect
	CheckHTTP                      // HTTP_GET
	CheckSSL                       // SSL_GET: HTTP_GET over TLS
	CheckMisc                      // MISC_CHECK: run a program
)

var checkKindNames = map[CheckKind]string{CheckTCP: "tcp", CheckHTTP: "http", CheckSSL: "ssl", CheckMisc: "misc"}

// String returns "tcp", "http", "ssl" or "misc".
func (k CheckKind) String() string {
	if s, ok := checkKindNames[k]; ok {
		return s
	}
	return "check(" + strconv.Itoa(int(k)) + ")"
}

// ParseCheckKind parses the name String returns.
func ParseCheckKind(s string) (CheckKind, error) {
	for k, name := range checkKindNames {
		if name == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown check type %q (want tcp, http, ssl or misc)", s)
}

// Check is one health check of a backend. Every interval is resolved:
// values inherited from the backend or service are already filled in.
type Check struct {
	Kind CheckKind
	// ConnectIP and ConnectPort default to the backend's address and port
	// (zero here means "the backend's").
	ConnectIP   netip.Addr
	ConnectPort uint16
	BindTo      netip.Addr
	BindPort    uint16
	// BindIf pins probes to an interface (keepalived's bind_if).
	BindIf string
	// ConnectTimeout bounds one probe.
	ConnectTimeout time.Duration
	// Retry is how many more failed probes in a row take an up backend
	// down; DelayBeforeRetry spaces them.
	Retry            int
	DelayBeforeRetry time.Duration
	// Rise is how many successes in a row bring a down backend back;
	// 0 or 1 is keepalived's one. xlb only (YAML): keepalived has none.
	Rise int
	// LogAllFailures logs every failed probe, not only the failure that
	// takes the check down (keepalived's log_all_failures).
	LogAllFailures bool
	// Alpha starts the check down, so that its backend takes traffic only
	// once the check has succeeded (keepalived's alpha); by default a
	// check starts up.
	Alpha bool
	// Warmup is the maximum random delay before the first probe.
	Warmup    time.Duration
	DelayLoop time.Duration
	// HTTP and SSL.
	URLs        []URL
	VirtualHost string
	EnableSNI   bool
	// MISC.
	MiscPath    string
	MiscTimeout time.Duration
	MiscDynamic bool
	User        string
	Source      Pos
	// Keywords is where each keyword of the block was written, so that an
	// error about its value names its own line.
	Keywords Keywords `json:"-"`
}

// URL is one URL an HTTP or SSL check fetches; the check passes when every
// URL answers as expected.
type URL struct {
	Path string
	// Digest is the hex MD5 of the expected body (keepalived's genhash);
	// empty means the body is not checked.
	Digest string
	// StatusCodes lists the accepted status ranges; empty means 200-299.
	StatusCodes []StatusRange
	// VirtualHost overrides the check's Host header for this URL.
	VirtualHost string
	Source      Pos
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Min, Max int }

// String returns "200" or "200-299".
func (r StatusRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	return strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
}

// ParseStatusRange parses "200" or "200-299".
func ParseStatusRange(s string) (StatusRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	min, err1 := strconv.Atoi(lo)
	max, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || min < 100 || max > 599 || min > max {
		return StatusRange{}, fmt.Errorf("invalid status code %q (want a code or range within 100-599)", s)
	}
	return StatusRange{Min: min, Max: max}, nil
}

// MarshalText implements encoding.TextMarshaler.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Proto) UnmarshalText(b []byte) error {
	v, err := ParseProto(string(b))
	*p = v
	return err
}

// MarshalText implements encoding.TextMarshaler.
func (k CheckKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *CheckKind) UnmarshalText(b []byte) error {
	v, err := ParseCheckKind(string(b))
	*k = v
	return err
}
