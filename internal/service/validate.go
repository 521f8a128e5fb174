package service

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Validate checks the configuration as a whole and returns every problem
// found, joined with errors.Join; each is an *Error naming the object and,
// where known, where it was written.
func (c *Config) Validate() error {
	v := &validator{}
	seen := map[ServiceKey]Pos{}
	for i := range c.Services {
		s := &c.Services[i]
		v.service(s)
		if !s.VIP.IsValid() {
			continue
		}
		k := s.Key()
		if prev, dup := seen[k]; dup {
			v.add(s.Source, "service %s: duplicate of the service at %s", k, prev)
			continue
		}
		seen[k] = s.Source
	}
	if f := c.Global.FlapDamping; f.On() && (f.Changes <= 0 || f.Window <= 0 || f.HoldDown <= 0) {
		v.add(f.Source, "flap_damping: changes (%d), window (%s) and hold_down (%s) must all be positive", f.Changes, f.Window, f.HoldDown)
	}
	t := c.Global.Timeouts
	for i, d := range t.fields() {
		if *d < 0 || *d > MaxTimeout {
			v.add(t.Source, "timeouts: %s %s is out of range (0, %s]", timeoutNames[i], *d, MaxTimeout)
		}
	}
	v.vrrp(c)
	v.bgp(c)
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(pos Pos, format string, args ...any) {
	v.errs = append(v.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) service(s *Service) {
	if !s.VIP.IsValid() {
		v.add(s.Source, "service: vip is missing")
		return
	}
	name := "service " + s.Key().String()
	if s.VIP.Zone() != "" || s.VIP.Is4In6() || s.VIP.IsUnspecified() || s.VIP.IsMulticast() {
		v.add(s.Source, "%s: vip %s is not a unicast address", name, s.VIP)
	}
	if s.Proto != TCP && s.Proto != UDP {
		v.add(s.Keywords.At(s.Source, "protocol"), "%s: protocol must be tcp or udp", name)
	}
	if _, _, err := SchedulerPlan(s.Scheduler); err != nil {
		v.add(s.Keywords.At(s.Source, "lvs_sched", "lb_algo"), "%s: %v", name, err)
	}
	if s.VLAN < 0 || s.VLAN > MaxVLAN {
		v.add(s.Keywords.At(s.Source, "vlan"), "%s: vlan %d is out of range [1, %d] (0 or none: any)", name, s.VLAN, MaxVLAN)
	}
	if s.SlowStart < 0 {
		v.add(s.Source, "%s: slow_start %s is negative", name, s.SlowStart)
	}
	if s.Persistence < 0 {
		v.add(s.Keywords.At(s.Source, "persistence_timeout"), "%s: persistence %s is negative", name, s.Persistence)
	}
	if s.Quorum < 0 || s.Hysteresis < 0 {
		v.add(s.Keywords.At(s.Source, "quorum", "hysteresis"), "%s: quorum %d and hysteresis %d must not be negative", name, s.Quorum, s.Hysteresis)
	}
	if s.Port == 0 && s.Persistence <= 0 {
		v.add(s.Source, "%s: port 0 (all ports) needs persistence", name)
	}
	if s.DelayLoop <= 0 {
		v.add(s.Keywords.At(s.Source, "delay_loop"), "%s: delay_loop %s must be positive", name, s.DelayLoop)
	}
	if ss := s.SorryServer; ss != nil {
		v.endpoint(s, name+": sorry server", ss.Source, ss.Addr, ss.Port, ss.Forward, s.Keywords.At(ss.Source, "sorry_server_lvs_method"))
	}
	if len(s.Backends) == 0 {
		v.add(s.Source, "%s: has no backends", name)
	}
	seen := map[netip.AddrPort]Pos{}
	for i := range s.Backends {
		b := &s.Backends[i]
		bname := fmt.Sprintf("%s: backend %s", name, b.AddrPort())
		v.endpoint(s, bname, b.Source, b.Addr, b.Port, b.Forward, b.Keywords.At(b.Source, "lvs_method"))
		if prev, dup := seen[b.AddrPort()]; dup {
			v.add(b.Source, "%s: duplicate of the backend at %s", bname, prev)
		}
		seen[b.AddrPort()] = b.Source
		if b.Weight < 0 {
			v.add(b.Keywords.At(b.Source, "weight"), "%s: weight %d is negative", bname, b.Weight)
		} else if b.Weight > MaxWeight {
			v.add(b.Keywords.At(b.Source, "weight"), "%s: weight %d is above %d", bname, b.Weight, MaxWeight)
		}
		for j := range b.Checks {
			v.check(bname, b, &b.Checks[j])
		}
	}
}

// endpoint checks an address that receives a service's traffic: by direct
// routing or in a tunnel, the packet reaches it unchanged, so it must be
// of the VIP's family (xlb tunnels IPv4 in IPv4 and IPv6 in IPv6) and
// serve the service's own port. fpos is where the forwarding method was
// written.
func (v *validator) endpoint(s *Service, name string, pos Pos, addr netip.Addr, port uint16, f Forward, fpos Pos) {
	how := "direct routing"
	if f.Method == Tunnel {
		how = "a tunnel"
	}
	if err := f.Validate(); err != nil {
		v.add(fpos, "%s: %v", name, err)
	}
	switch {
	case !addr.IsValid():
		v.add(pos, "%s: address is missing", name)
	case addr.Zone() != "" || addr.Is4In6() || addr.IsUnspecified() || addr.IsMulticast():
		v.add(pos, "%s: %s is not a unicast address", name, addr)
	case addr.Is4() != s.VIP.Is4() && f.Method == Tunnel:
		v.add(pos, "%s: address family differs from vip %s; xlb tunnels IPv4 in IPv4 and IPv6 in IPv6 only", name, s.VIP)
	case addr.Is4() != s.VIP.Is4():
		v.add(pos, "%s: address family differs from vip %s; direct routing cannot translate it", name, s.VIP)
	}
	if port != s.Port {
		v.add(pos, "%s: port %d differs from the service port %d; %s cannot rewrite ports", name, port, s.Port, how)
	}
}

func (v *validator) check(bname string, b *Backend, c *Check) {
	name := fmt.Sprintf("%s: %s check", bname, c.Kind)
	positive := func(what string, d time.Duration) {
		if d <= 0 {
			v.add(c.Keywords.At(c.Source, what), "%s: %s %s must be positive", name, what, d)
		}
	}
	notNegative := func(what string, d time.Duration) {
		if d < 0 {
			v.add(c.Keywords.At(c.Source, what), "%s: %s %s is negative", name, what, d)
		}
	}
	positive("delay_loop", c.DelayLoop)
	notNegative("warmup", c.Warmup)
	notNegative("delay_before_retry", c.DelayBeforeRetry)
	if c.Retry < 0 {
		v.add(c.Keywords.At(c.Source, "retry", "nb_get_retry"), "%s: retry %d is negative", name, c.Retry)
	}
	if c.Rise < 0 {
		v.add(c.Keywords.At(c.Source, "rise"), "%s: rise %d is negative", name, c.Rise)
	}
	switch c.Kind {
	case CheckTCP, CheckHTTP, CheckSSL:
		positive("connect_timeout", c.ConnectTimeout)
		if c.ConnectIP.IsValid() && c.ConnectIP.Is4() != b.Addr.Is4() {
			v.add(c.Keywords.At(c.Source, "connect_ip"), "%s: connect_ip %s is not of the backend's address family", name, c.ConnectIP)
		}
		if c.BindTo.IsValid() && c.ConnectIP.IsValid() && c.BindTo.Is4() != c.ConnectIP.Is4() ||
			c.BindTo.IsValid() && !c.ConnectIP.IsValid() && c.BindTo.Is4() != b.Addr.Is4() {
			v.add(c.Keywords.At(c.Source, "bindto"), "%s: bindto %s is not of the address family it connects to", name, c.BindTo)
		}
		if c.MiscPath != "" {
			v.add(c.Keywords.At(c.Source, "misc_path"), "%s: misc_path is only for misc checks", name)
		}
	case CheckMisc:
		if c.MiscPath == "" {
			v.add(c.Source, "%s: misc_path is missing", name)
		}
		notNegative("misc_timeout", c.MiscTimeout)
	default:
		v.add(c.Source, "%s: unknown check type", name)
	}
	if c.Kind == CheckHTTP || c.Kind == CheckSSL {
		if len(c.URLs) == 0 {
			v.add(c.Source, "%s: needs at least one url", name)
		}
		for _, u := range c.URLs {
			if u.Path == "" {
				v.add(u.Source, "%s: url has no path", name)
			}
			if u.Digest != "" && !isHexMD5(u.Digest) {
				v.add(u.Source, "%s: url %s: digest %q is not 32 hex digits (an MD5 sum)", name, u.Path, u.Digest)
			}
			for _, r := range u.StatusCodes {
				if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
					v.add(u.Source, "%s: url %s: status code %s is not within 100-599", name, u.Path, r)
				}
			}
		}
	} else if len(c.URLs) > 0 {
		v.add(c.Source, "%s: urls are only for http and ssl checks", name)
	}
}

func isHexMD5(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

func (v *validator) vrrp(c *Config) {
	scripts := map[string]Pos{}
	for _, s := range c.Scripts {
		name := "vrrp_script " + s.Name
		if s.Name == "" {
			v.add(s.Source, "vrrp_script: name is missing")
		} else if prev, dup := scripts[s.Name]; dup {
			v.add(s.Source, "%s: duplicate of the script at %s", name, prev)
		}
		scripts[s.Name] = s.Source
		if s.Script == "" {
			v.add(s.Source, "%s: script is missing", name)
		}
		if s.Interval <= 0 {
			v.add(s.Keywords.At(s.Source, "interval"), "%s: interval %s must be positive", name, s.Interval)
		}
		if s.Timeout < 0 {
			v.add(s.Keywords.At(s.Source, "timeout"), "%s: timeout %s is negative", name, s.Timeout)
		}
		if s.Weight < -253 || s.Weight > 253 {
			v.add(s.Keywords.At(s.Source, "weight"), "%s: weight %d is outside -253..253", name, s.Weight)
		}
		if s.Rise < 1 || s.Fall < 1 {
			v.add(s.Keywords.At(s.Source, "rise", "fall"), "%s: rise and fall must be at least 1", name)
		}
	}
	instances := map[string]Pos{}
	type vrid struct {
		iface string
		id    int
		v6    bool
	}
	vrids := map[vrid]string{}
	for i := range c.VRRP {
		in := &c.VRRP[i]
		v.instance(in, scripts)
		if prev, dup := instances[in.Name]; dup && in.Name != "" {
			v.add(in.Source, "vrrp_instance %s: duplicate of the instance at %s", in.Name, prev)
		}
		instances[in.Name] = in.Source
		v6 := len(in.VirtualIPs) > 0 && in.VirtualIPs[0].Prefix.Addr().Is6()
		k := vrid{in.Interface, in.VirtualRouterID, v6}
		if other, dup := vrids[k]; dup {
			v.add(in.Source, "vrrp_instance %s: virtual_router_id %d on %s is already used by vrrp_instance %s", in.Name, in.VirtualRouterID, in.Interface, other)
		}
		vrids[k] = in.Name
	}
	member := map[string]string{}
	for _, g := range c.SyncGroups {
		name := "vrrp_sync_group " + g.Name
		if len(g.Instances) == 0 {
			v.add(g.Source, "%s: has no instances", name)
		}
		for _, in := range g.Instances {
			if _, ok := instances[in]; !ok {
				v.add(g.Source, "%s: vrrp_instance %s is not defined", name, in)
			}
			if other, dup := member[in]; dup {
				v.add(g.Source, "%s: vrrp_instance %s is already in vrrp_sync_group %s", name, in, other)
			}
			member[in] = g.Name
		}
	}
}

func (v *validator) instance(in *VRRPInstance, scripts map[string]Pos) {
	name := "vrrp_instance " + in.Name
	if in.Name == "" {
		v.add(in.Source, "vrrp_instance: name is missing")
	}
	if in.State != "MASTER" && in.State != "BACKUP" {
		v.add(in.Keywords.At(in.Source, "state"), "%s: state %q must be MASTER or BACKUP", name, in.State)
	}
	if in.Interface == "" {
		v.add(in.Source, "%s: interface is missing", name)
	}
	if in.VirtualRouterID < 1 || in.VirtualRouterID > 255 {
		v.add(in.Keywords.At(in.Source, "virtual_router_id"), "%s: virtual_router_id %d is outside 1..255", name, in.VirtualRouterID)
	}
	if in.Priority < 1 || in.Priority > 255 {
		v.add(in.Keywords.At(in.Source, "priority"), "%s: priority %d is outside 1..255", name, in.Priority)
	}
	if in.AdvertInt <= 0 {
		v.add(in.Keywords.At(in.Source, "advert_int"), "%s: advert_int %s must be positive", name, in.AdvertInt)
	} else if lo, hi := advertRange(in.Version); in.Version == 2 || in.Version == 3 {
		if in.AdvertInt < lo || in.AdvertInt > hi || in.AdvertInt%lo != 0 {
			v.add(in.Keywords.At(in.Source, "advert_int", "version"), "%s: advert_int %s: VRRPv%d carries multiples of %s up to %s", name, in.AdvertInt, in.Version, lo, hi)
		}
	}
	if in.Version != 2 && in.Version != 3 {
		v.add(in.Keywords.At(in.Source, "version"), "%s: version %d must be 2 or 3", name, in.Version)
	}
	if in.Auth != nil {
		if in.Auth.Type != "PASS" {
			v.add(in.Source, "%s: auth_type %s is not supported (use PASS)", name, in.Auth.Type)
		}
		if len(in.Auth.Pass) > 8 {
			v.add(in.Source, "%s: auth_pass is longer than 8 characters", name)
		}
		if in.Version == 3 {
			v.add(in.Source, "%s: VRRP version 3 has no authentication", name)
		}
	}
	if len(in.VirtualIPs) == 0 {
		v.add(in.Source, "%s: has no virtual_ipaddress", name)
	}
	// An advertisement lists every address in one packet: an 8-bit count,
	// and for IPv6 a packet a 1500-byte link, and the receive buffer of
	// the peers, must carry. Past that both peers stop hearing each other
	// and both become master.
	at := in.Keywords.At(in.Source, "virtual_ipaddress")
	if n := len(in.VirtualIPs); n > maxAdvertAddrs {
		v.add(at, "%s: %d virtual_ipaddress entries; a VRRP advertisement carries at most %d", name, n, maxAdvertAddrs)
	} else if n > 0 && in.VirtualIPs[0].Prefix.Addr().Is6() && advertSize6(n) > advertMTU {
		v.add(at, "%s: %d IPv6 addresses make a %d-byte advertisement; a %d-byte link carries %d at most: move some to another vrrp_instance",
			name, n, advertSize6(n), advertMTU, (advertMTU-advertSize6(0))/16)
	}
	seen := map[netip.Addr]bool{}
	var fam4, fam6 bool
	for _, vip := range in.VirtualIPs {
		a := vip.Prefix.Addr()
		if !vip.Prefix.IsValid() {
			v.add(vip.Source, "%s: virtual address is missing", name)
			continue
		}
		if seen[a] {
			v.add(vip.Source, "%s: virtual address %s is listed twice", name, a)
		}
		seen[a] = true
		fam4 = fam4 || a.Is4()
		fam6 = fam6 || a.Is6()
	}
	if fam4 && fam6 {
		v.add(in.Source, "%s: mixes IPv4 and IPv6 virtual addresses; VRRP needs one instance per family", name)
	}
	if fam6 && in.Version == 2 {
		v.add(in.Source, "%s: IPv6 needs VRRP version 3", name)
	}
	for _, p := range in.UnicastPeers {
		if !p.IsValid() || p.IsUnspecified() || p.IsMulticast() {
			v.add(in.Source, "%s: unicast peer %s is not a unicast address", name, p)
		}
	}
	for _, t := range in.TrackScripts {
		if _, ok := scripts[t.Name]; !ok {
			v.add(t.Source, "%s: track_script %s is not defined", name, t.Name)
		}
		if t.Weight < -253 || t.Weight > 253 {
			v.add(t.Source, "%s: track_script %s: weight %d is outside -253..253", name, t.Name, t.Weight)
		}
	}
	for _, t := range in.TrackInterfaces {
		if t.Weight < -253 || t.Weight > 253 {
			v.add(t.Source, "%s: track_interface %s: weight %d is outside -253..253", name, t.Name, t.Weight)
		}
	}
	if in.PreemptDelay < 0 || in.GARPMasterDelay < 0 || in.GARPMasterRefresh < 0 || in.GARPMasterRepeat < 0 || in.GARPMasterRefreshRepeat < 0 || in.GARPLowerPrioRepeat < 0 || in.GARPLowerPrioDelay < 0 {
		v.add(in.Source, "%s: preempt_delay and garp_master_* must not be negative", name)
	}
}

// advertRange is the advertisement interval a VRRP version's packets
// carry: its unit, which is also the least, and the most.
func advertRange(version int) (unit, most time.Duration) {
	if version == 2 {
		return time.Second, 255 * time.Second
	}
	return 10 * time.Millisecond, 4095 * 10 * time.Millisecond
}

// VRRP advertisement limits: the count is one byte; an IPv6 advertisement
// (IPv6 header, VRRP header, 16 bytes an address) must fit the link and
// the 1500-byte buffer the peers read it into.
const (
	maxAdvertAddrs = 255
	advertMTU      = 1500
)

func advertSize6(n int) int { return 40 + 8 + 16*n }
