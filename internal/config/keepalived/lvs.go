package keepalived

import (
	"slices"
	"strings"
	"time"

	"github.com/xlb-project/xlb/internal/service"
)

func (c *converter) config(root *node) *service.Config {
	cfg := &service.Config{}
	c.defaults = defaults{
		vrrpVersion:      service.DefaultVRRPVersion,
		garpMasterDelay:  service.DefaultGARPMasterDelay,
		garpMasterRepeat: service.DefaultGARPMasterRepeat,
	}
	// global_defs first: it sets defaults for blocks that may come before it.
	for _, n := range root.children {
		if n.kw == "global_defs" {
			c.globalDefs(n, cfg)
		}
	}
	for _, n := range root.children {
		switch n.kw {
		case "global_defs":
		case "virtual_server":
			if s, ok := c.virtualServer(n); ok {
				cfg.Services = append(cfg.Services, s)
			}
		case "vrrp_instance":
			if in, ok := c.vrrpInstance(n); ok {
				cfg.VRRP = append(cfg.VRRP, in)
			}
		case "vrrp_sync_group":
			if g, ok := c.syncGroup(n); ok {
				cfg.SyncGroups = append(cfg.SyncGroups, g)
			}
		case "vrrp_script":
			if s, ok := c.vrrpScript(n); ok {
				cfg.Scripts = append(cfg.Scripts, s)
			}
		case "virtual_server_group":
			c.unsupported(n, "write one virtual_server per address")
		case "static_ipaddress", "static_routes", "static_rules":
			c.unsupported(n, "configure the host's addresses and routes outside xlb")
		case "vrrp_track_file", "track_file", "vrrp_track_process", "track_process", "bfd_instance", "garp_group", "linkbeat_interfaces":
			c.unsupported(n, "track state with a vrrp_script")
		case "SSL":
			c.unsupported(n, "SSL_GET checks run without a client certificate")
		case "net_namespace", "instance":
			c.unsupported(n, "run xlb inside the namespace instead")
		default:
			c.unknown(n, "the top level")
		}
	}
	resolveTrackWeights(cfg)
	return cfg
}

func (c *converter) globalDefs(n *node, cfg *service.Config) {
	if !c.block(n) {
		return
	}
	cfg.Global.Source = n.pos
	for _, k := range n.children {
		switch k.kw {
		case "router_id":
			if s, ok := c.str(k); ok {
				cfg.Global.RouterID = s
			}
		case "vrrp_version":
			if v, ok := c.integer(k, 2, 3); ok {
				c.defaults.vrrpVersion = v
			}
		case "vrrp_garp_master_delay":
			if v, ok := c.timer(k); ok {
				c.defaults.garpMasterDelay = v
			}
		case "vrrp_garp_master_repeat":
			if v, ok := c.integer(k, 0, 1<<31-1); ok {
				c.defaults.garpMasterRepeat = v
			}
		case "vrrp_garp_master_refresh":
			if v, ok := c.timer(k); ok {
				c.defaults.garpMasterRefresh = v
			}
		case "vrrp_garp_lower_prio_repeat":
			if v, ok := c.integer(k, 0, 1<<31-1); ok {
				c.defaults.garpLowerRepeat = v
			}
		case "vrrp_garp_lower_prio_delay":
			if v, ok := c.timer(k); ok {
				c.defaults.garpLowerDelay = &v
			}
		case "vrrp_garp_master_refresh_repeat":
			if v, ok := c.integer(k, 1, 1<<31-1); ok {
				c.defaults.garpRefreshRepeat = v
			}
		case "default_interface":
			if s, ok := c.str(k); ok {
				c.defaults.iface = s
			}
		case "vrrp_check_unicast_src":
			c.defaults.checkUnicastSrc = c.args(k, 0, 0)
		case "vrrp_lower_prio_no_advert":
			c.defaults.lowerPrioNoAdvert, _ = c.boolean(k)
		case "vrrp_higher_prio_send_advert":
			c.defaults.higherPrioAdvert, _ = c.boolean(k)
		case "vrrp_skip_check_adv_addr":
			c.defaults.skipCheckAdvAddr, _ = c.boolean(k)
		case "script_user":
			if c.args(k, 1, 2) {
				c.defaults.scriptUser = strings.Join(k.args, " ")
			}
		case "enable_script_security":
			// xlb always applies keepalived's script security: there is
			// nothing to enable, and nothing to warn about.
			c.args(k, 0, 0)
		default:
			c.warnf(k, "global_defs: %s is not used by xlb (ignored)", k.kw)
		}
	}
}

// checkDefaults are the checker settings a virtual or real server passes
// down; nil means "not set here, inherit".
type checkDefaults struct {
	connectTimeout   *time.Duration
	retry            *int
	delayBeforeRetry *time.Duration
	warmup           *time.Duration
	delayLoop        *time.Duration
	virtualHost      *string
	alpha            *bool
}

// inherited handles a keyword that a virtual server, real server and
// checker all accept, reporting whether n was one.
func (c *converter) inherited(n *node, d *checkDefaults) bool {
	switch n.kw {
	case "connect_timeout":
		if v, ok := c.timer(n); ok {
			d.connectTimeout = &v
		}
	case "retry", "nb_get_retry":
		if n.kw == "nb_get_retry" {
			c.warnf(n, "nb_get_retry is deprecated; read as retry")
		}
		if v, ok := c.integer(n, 0, 1<<31-1); ok {
			d.retry = &v
		}
	case "delay_before_retry":
		if v, ok := c.timer(n); ok {
			d.delayBeforeRetry = &v
		}
	case "warmup":
		if v, ok := c.timer(n); ok {
			d.warmup = &v
		}
	case "delay_loop":
		if v, ok := c.timer(n); ok {
			d.delayLoop = &v
		}
	case "virtualhost":
		if v, ok := c.str(n); ok {
			d.virtualHost = &v
		}
	case "alpha":
		if v, ok := c.boolean(n); ok {
			d.alpha = &v
		}
	default:
		return false
	}
	return true
}

// forwarding reads lvs_method (lb_kind, sorry_server_lvs_method) as
// keepalived 2.2 does: a method, then tunnel options in any order, a
// later one of a kind overriding an earlier one. keepalived checks the
// options after DR too and then ignores them; so does xlb, with a
// warning.
func (c *converter) forwarding(n *node) (service.Forward, bool) {
	var f service.Forward
	if !c.args(n, 1, 64) {
		return f, false
	}
	switch strings.ToUpper(n.args[0]) {
	case "DR":
	case "TUN":
		f.Method = service.Tunnel
	case "NAT":
		c.errorf(n, "%s NAT is not supported by xlb: the balancer never sees the replies NAT must rewrite; use DR or TUN with the VIP on the real servers' loopback", n.kw)
		return f, false
	default:
		c.errorf(n, "%s %q is not a forwarding method (NAT, DR or TUN)", n.kw, n.args[0])
		return f, false
	}
	tunType, csum := "ipip", "nocsum"
	var port int
	opts := n.args[1:]
	for i := 0; i < len(opts); i++ {
		switch opts[i] {
		case "type":
			if i+1 == len(opts) {
				c.errorf(n, "%s: type needs a tunnel type (ipip or gue)", n.kw)
				return f, false
			}
			i++
			if t := opts[i]; t != "ipip" && t != "gue" && t != "gre" {
				c.errorf(n, "%s: unknown tunnel type %q (ipip, gue or gre)", n.kw, t)
				return f, false
			}
			tunType = opts[i]
		case "port":
			if i+1 == len(opts) {
				c.errorf(n, "%s: port needs a number", n.kw)
				return f, false
			}
			i++
			v, ok := c.intValue(n, n.kw+": gue port", opts[i], 1, 65535)
			if !ok {
				return f, false
			}
			port = v
		case "nocsum", "csum", "remcsum":
			csum = opts[i]
		default:
			c.errorf(n, "%s: unknown tunnel option %q (type, port, nocsum, csum or remcsum)", n.kw, opts[i])
			return f, false
		}
	}
	switch {
	case tunType == "gue" && port == 0:
		c.errorf(n, "%s: type gue needs port NUM", n.kw)
		return f, false
	case tunType != "gue" && port != 0:
		c.errorf(n, "%s: port %d is only for type gue", n.kw, port)
		return f, false
	case tunType == "ipip" && csum != "nocsum":
		c.errorf(n, "%s: type ipip takes no checksum option", n.kw)
		return f, false
	case tunType == "gre" && csum == "remcsum":
		c.errorf(n, "%s: type gre takes no remcsum", n.kw)
		return f, false
	}
	if f.Method != service.Tunnel {
		if len(opts) > 0 {
			c.warnf(n, "%s DR: tunnel options apply only to TUN (ignored)", n.kw)
		}
		return f, true
	}
	ok := true
	if tunType == "gre" {
		c.errorf(n, "%s: tunnel type gre is not supported by xlb, which tunnels with ipip or gue", n.kw)
		ok = false
	}
	if csum == "remcsum" {
		c.errorf(n, "%s: remcsum (remote checksum offload) is not implemented by xlb; use csum or nocsum", n.kw)
		ok = false
	}
	if tunType == "gue" {
		f.Encap, f.Port, f.Csum = service.GUE, uint16(port), csum == "csum"
	}
	return f, ok
}

var ignoredVS = set("ha_suspend",
	"smtp_alert", "snmp_name", "ops", "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port",
	"mh-fallback", "ip_family", "nat_mask", "net_mask", "inhibit_on_failure_sorry")

func set(words ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range words {
		m[w] = true
	}
	return m
}

func (c *converter) virtualServer(n *node) (service.Service, bool) {
	s := service.Service{Source: n.pos, DelayLoop: service.DefaultDelayLoop}
	if len(n.args) > 0 && n.args[0] == "fwmark" {
		c.errorf(n, "virtual_server fwmark is not supported by xlb; use virtual_server ADDRESS PORT (port 0 for all ports)")
		return s, false
	}
	if len(n.args) > 0 && n.args[0] == "group" {
		c.errorf(n, "virtual_server group is not supported by xlb; write one virtual_server per address")
		return s, false
	}
	errs := len(c.errs)
	vip, port, ok := c.addrPort(n, 0)
	if !ok || !c.block(n) {
		return s, false
	}
	s.VIP, s.Port = vip, port
	var d checkDefaults
	var inhibit, protoSet, schedSet bool
	// method is the virtual server's lvs_method so far: keepalived gives
	// a real or sorry server the method set when its block begins, and
	// the final one to those that began before any was set.
	var method *service.Forward
	var reals []*node
	var realMethods []*service.Forward
	var sorry *node
	var sorryMethod *service.Forward
	for _, k := range n.children {
		s.Keywords.Set(k.kw, k.pos)
		switch {
		case k.kw == "real_server":
			reals = append(reals, k)
			realMethods = append(realMethods, method)
		case k.kw == "sorry_server":
			sorry, sorryMethod = k, method
		case c.inherited(k, &d):
		case k.kw == "lb_algo" || k.kw == "lvs_sched":
			if v, ok := c.str(k); ok {
				if _, _, err := service.SchedulerPlan(v); err != nil {
					c.errorf(k, "%v", err)
				}
				s.Scheduler, schedSet = v, true
			}
		case k.kw == "lb_kind" || k.kw == "lvs_method":
			if f, ok := c.forwarding(k); ok {
				method = &f
			} else {
				// Refused: report no missing method on top.
				method = &service.Forward{}
			}
		case k.kw == "protocol":
			if v, ok := c.str(k); ok {
				switch strings.ToUpper(v) {
				case "TCP":
					s.Proto = service.TCP
				case "UDP":
					s.Proto = service.UDP
				case "SCTP":
					c.errorf(k, "protocol SCTP is not supported by xlb; use TCP or UDP")
				default:
					c.errorf(k, "protocol %q is not TCP, UDP or SCTP", v)
				}
				protoSet = true
			}
		case k.kw == "persistence_timeout":
			if !c.args(k, 0, 1) {
				break
			}
			if len(k.args) == 0 {
				s.Persistence = service.DefaultPersistence
			} else if v, ok := c.intValue(k, k.kw, k.args[0], 0, 2678400); ok {
				s.Persistence = time.Duration(v) * time.Second
			}
		case k.kw == "persistence_granularity":
			c.unsupported(k, "persistence is per client address")
		case k.kw == "persistence_engine":
			c.unsupported(k, "persistence is per client address")
		case k.kw == "omega":
			s.Omega = c.args(k, 0, 0)
		case k.kw == "quorum":
			s.Quorum, _ = c.integer(k, 1, 1<<31-1)
		case k.kw == "slow_start":
			if v, ok := c.integer(k, 0, 3600); ok {
				s.SlowStart = time.Duration(v) * time.Second
			}
		case k.kw == "hysteresis":
			s.Hysteresis, _ = c.integer(k, 0, 1<<31-1)
		case k.kw == "quorum_up" || k.kw == "quorum_down":
			if !c.userScript(k, &s.QuorumUser, s.QuorumUp != "" || s.QuorumDown != "",
				"the other quorum script of this virtual_server", "a virtual server's quorum scripts") {
				break
			}
			if k.kw == "quorum_up" {
				s.QuorumUp = k.args[0]
			} else {
				s.QuorumDown = k.args[0]
			}
		case k.kw == "sorry_server_inhibit":
		case k.kw == "sorry_server_lvs_method":
			switch {
			case sorry == nil && slices.ContainsFunc(n.children, func(o *node) bool { return o.kw == "sorry_server" }):
				c.errorf(k, "sorry_server_lvs_method comes before sorry_server, where keepalived ignores it; write it after sorry_server")
			case sorry == nil:
				c.warnf(k, "sorry_server_lvs_method without a sorry_server (ignored)")
			default:
				if f, ok := c.forwarding(k); ok {
					sorryMethod = &f
				} else {
					sorryMethod = &service.Forward{}
				}
			}
		case k.kw == "inhibit_on_failure":
			inhibit, _ = c.boolean(k)
		case ignoredVS[k.kw]:
			c.ignored(k)
		default:
			c.unknown(k, "virtual_server")
		}
	}
	// keepalived 2.2.7's defaults, in the order it applies them.
	if !protoSet {
		c.warnf(n, "no protocol set; keepalived defaults to UDP (add `protocol TCP` for a TCP service)")
		s.Proto = service.UDP
	}
	if s.Port == 0 && s.Persistence == 0 {
		c.warnf(n, "port 0 is only valid for a persistent service; persistence_timeout %d applied, as keepalived does", int(service.DefaultPersistence/time.Second))
		s.Persistence = service.DefaultPersistence
	}
	if !schedSet {
		c.warnf(n, "no scheduler set; keepalived defaults to %s", service.DefaultScheduler)
		s.Scheduler = service.DefaultScheduler
	}
	// A server without its own method takes the virtual server's; with
	// none set either, keepalived gives it NAT.
	noMethod := false
	inherit := func(f *service.Forward) service.Forward {
		switch {
		case f != nil:
			return *f
		case method != nil:
			return *method
		}
		if !noMethod {
			c.errorf(n, "no lb_kind set: keepalived defaults to NAT, which xlb does not serve; add `lb_kind DR` (or TUN)")
			noMethod = true
		}
		return service.Forward{}
	}
	if d.delayLoop != nil {
		s.DelayLoop = *d.delayLoop
	} else {
		d.delayLoop = &s.DelayLoop
	}
	if sorry != nil {
		if a, p, ok := c.addrPort(sorry, s.Port); ok && c.args(sorry, 1, 2) {
			s.SorryServer = &service.SorryServer{Addr: a, Port: p, Source: sorry.pos, Forward: inherit(sorryMethod)}
			for _, k := range n.children {
				if k.kw == "sorry_server_inhibit" {
					s.SorryServer.Inhibit, _ = c.boolean(k)
				}
			}
		}
	}
	for i, r := range reals {
		if b, ok := c.realServer(r, &s, d, inhibit, func() service.Forward { return inherit(realMethods[i]) }); ok {
			s.Backends = append(s.Backends, b)
		}
	}
	return s, len(c.errs) == errs
}

var ignoredRS = set("uthreshold", "lthreshold", "smtp_alert", "snmp_name")

// realServer reads a real_server block; vsMethod gives the virtual
// server's method when the block sets none of its own.
func (c *converter) realServer(n *node, s *service.Service, vsd checkDefaults, inhibit bool, vsMethod func() service.Forward) (service.Backend, bool) {
	b := service.Backend{Weight: service.DefaultWeight, Source: n.pos}
	a, p, ok := c.addrPort(n, s.Port)
	if !ok {
		return b, false
	}
	b.Addr, b.Port, b.InhibitOnFailure = a, p, inhibit
	d := vsd
	var checks []*node
	var own *service.Forward
	for _, k := range n.children {
		b.Keywords.Set(k.kw, k.pos)
		switch {
		case c.inherited(k, &d):
		case k.kw == "weight":
			if v, ok := c.integer(k, -1<<31, 1<<31-1); ok {
				b.Weight = v
			}
		case k.kw == "inhibit_on_failure":
			b.InhibitOnFailure, _ = c.boolean(k)
		case k.kw == "lvs_method":
			if f, ok := c.forwarding(k); ok {
				own = &f
			} else {
				own = &service.Forward{}
			}
		case k.kw == "notify_up" || k.kw == "notify_down":
			if !c.userScript(k, &b.NotifyUser, b.NotifyUp != "" || b.NotifyDown != "",
				"the other notify script of this real_server", "a real server's notify scripts") {
				break
			}
			if k.kw == "notify_up" {
				b.NotifyUp = k.args[0]
			} else {
				b.NotifyDown = k.args[0]
			}
		case checkKinds[k.kw] != 0:
			checks = append(checks, k)
		case k.kw == "SMTP_CHECK" || k.kw == "DNS_CHECK" || k.kw == "UDP_CHECK" || k.kw == "PING_CHECK" ||
			k.kw == "BFD_CHECK" || k.kw == "FILE_CHECK":
			c.unsupported(k, "use TCP_CHECK, HTTP_GET, SSL_GET or MISC_CHECK")
		case ignoredRS[k.kw]:
			c.ignored(k)
		default:
			c.unknown(k, "real_server")
		}
	}
	if own != nil {
		b.Forward = *own
	} else {
		b.Forward = vsMethod()
	}
	for _, k := range checks {
		if ch, ok := c.check(k, checkKinds[k.kw], d); ok {
			b.Checks = append(b.Checks, ch)
		}
	}
	return b, true
}

var checkKinds = map[string]service.CheckKind{
	"TCP_CHECK":  service.CheckTCP,
	"HTTP_GET":   service.CheckHTTP,
	"SSL_GET":    service.CheckSSL,
	"MISC_CHECK": service.CheckMisc,
}

var ignoredCheck = set("fwmark", "http_protocol", "fast_recovery")

func (c *converter) check(n *node, kind service.CheckKind, d checkDefaults) (service.Check, bool) {
	ch := service.Check{Kind: kind, Source: n.pos}
	if !c.block(n) {
		return ch, false
	}
	web := kind == service.CheckHTTP || kind == service.CheckSSL
	conn := kind != service.CheckMisc
	for _, k := range n.children {
		ch.Keywords.Set(k.kw, k.pos)
		switch {
		case c.inherited(k, &d):
			if k.kw == "virtualhost" && !web {
				c.errorf(k, "virtualhost is only for HTTP_GET and SSL_GET")
			}
		case conn && k.kw == "connect_ip":
			if s, ok := c.str(k); ok {
				ch.ConnectIP, _ = c.addr(k, k.kw, s)
			}
		case conn && k.kw == "connect_port":
			if s, ok := c.str(k); ok {
				ch.ConnectPort, _ = c.port(k, "connect_port", s)
			}
		case conn && (k.kw == "bindto" || k.kw == "bind_to"):
			if s, ok := c.str(k); ok {
				ch.BindTo, _ = c.addr(k, k.kw, s)
			}
		case conn && k.kw == "bind_if":
			ch.BindIf, _ = c.str(k)
		case conn && k.kw == "bind_port":
			if s, ok := c.str(k); ok {
				ch.BindPort, _ = c.port(k, "bind_port", s)
			}
		case web && k.kw == "url":
			if u, ok := c.url(k); ok {
				ch.URLs = append(ch.URLs, u)
			}
		case kind == service.CheckSSL && k.kw == "enable_sni":
			ch.EnableSNI, _ = c.boolean(k)
		case kind == service.CheckMisc && k.kw == "misc_path":
			if s, ok := c.str(k); ok {
				ch.MiscPath = s
			}
		case kind == service.CheckMisc && k.kw == "misc_timeout":
			ch.MiscTimeout, _ = c.timer(k)
		case kind == service.CheckMisc && k.kw == "misc_dynamic":
			ch.MiscDynamic, _ = c.boolean(k)
		case k.kw == "log_all_failures":
			ch.LogAllFailures, _ = c.boolean(k)
		case kind == service.CheckMisc && k.kw == "user":
			if c.args(k, 1, 2) {
				ch.User = strings.Join(k.args, " ")
			}
		case ignoredCheck[k.kw]:
			c.ignored(k)
		default:
			c.unknown(k, n.kw)
		}
	}
	if kind == service.CheckMisc && ch.User == "" {
		ch.User = c.defaults.scriptUser
	}
	ch.DelayLoop = *d.delayLoop
	ch.Warmup = ch.DelayLoop // keepalived: random warmup up to delay_loop unless set
	if d.warmup != nil {
		ch.Warmup = *d.warmup
	}
	if conn {
		ch.ConnectTimeout = service.DefaultConnectTimeout
		if d.connectTimeout != nil {
			ch.ConnectTimeout = *d.connectTimeout
		}
	}
	ch.Retry = service.DefaultRetry
	if kind == service.CheckMisc {
		ch.Retry = 0
	}
	if d.retry != nil {
		ch.Retry = *d.retry
	}
	ch.DelayBeforeRetry = service.DefaultDelayBeforeRetry
	if web {
		ch.DelayBeforeRetry = service.DefaultHTTPDelayBeforeRetry
	}
	if d.delayBeforeRetry != nil {
		ch.DelayBeforeRetry = *d.delayBeforeRetry
	}
	if web && d.virtualHost != nil {
		ch.VirtualHost = *d.virtualHost
	}
	if d.alpha != nil {
		ch.Alpha = *d.alpha
	}
	return ch, true
}

func (c *converter) url(n *node) (service.URL, bool) {
	u := service.URL{Source: n.pos}
	if !c.block(n) {
		return u, false
	}
	for _, k := range n.children {
		switch k.kw {
		case "path":
			u.Path, _ = c.str(k)
		case "digest":
			u.Digest, _ = c.str(k)
		case "status_code":
			if !c.args(k, 1, 64) {
				break
			}
			for _, a := range k.args {
				r, err := service.ParseStatusRange(a)
				if err != nil {
					c.errorf(k, "%v", err)
					continue
				}
				u.StatusCodes = append(u.StatusCodes, r)
			}
		case "virtualhost":
			u.VirtualHost, _ = c.str(k)
		case "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset":
			c.unsupported(k, "match the body with digest or the status with status_code")
		default:
			c.unknown(k, "url")
		}
	}
	if u.Path == "" {
		c.errorf(n, "url has no path")
		return u, false
	}
	return u, true
}
