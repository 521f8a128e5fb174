package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-project/xlb/internal/service"
)

var ignoredVRRP = set("smtp_alert", "debug", "accept", "no_accept",
	"strict_mode", "unicast_ttl", "native_ipv6", "down_timer_adverts",
	"kernel_rx_buf_size", "notify_deleted", "linkbeat_use_polling")

// vrrpInstance converts a vrrp_instance block; track_script weights left
// unset here are filled from the scripts by resolveTrackWeights.
func (c *converter) vrrpInstance(n *node) (service.VRRPInstance, bool) {
	in := service.VRRPInstance{
		State:                   "BACKUP",
		Priority:                service.DefaultVRRPPriority,
		AdvertInt:               service.DefaultVRRPAdvertInt,
		Version:                 c.defaults.vrrpVersion,
		Preempt:                 true,
		GARPMasterDelay:         c.defaults.garpMasterDelay,
		GARPMasterRepeat:        c.defaults.garpMasterRepeat,
		GARPMasterRefresh:       c.defaults.garpMasterRefresh,
		GARPMasterRefreshRepeat: c.defaults.garpRefreshRepeat,
		SkipCheckAdvAddr:        c.defaults.skipCheckAdvAddr,
		CheckUnicastSrc:         c.defaults.checkUnicastSrc,
		LowerPrioNoAdvert:       c.defaults.lowerPrioNoAdvert,
		HigherPrioSendAdvert:    c.defaults.higherPrioAdvert,
		Interface:               c.defaults.iface,
		Source:                  n.pos,
	}
	errs := len(c.errs)
	if len(n.args) != 1 {
		c.errorf(n, "vrrp_instance needs one name, got %d", len(n.args))
		return in, false
	}
	in.Name = n.args[0]
	if !c.block(n) {
		return in, false
	}
	versionSet := false
	var advert *node
	var lowerDelay *time.Duration
	in.GARPLowerPrioRepeat = c.defaults.garpLowerRepeat
	for _, k := range n.children {
		in.Keywords.Set(k.kw, k.pos)
		switch k.kw {
		case "state":
			if v, ok := c.str(k); ok {
				if v != "MASTER" && v != "BACKUP" {
					c.errorf(k, "state %q is not MASTER or BACKUP", v)
				}
				in.State = v
			}
		case "interface":
			in.Interface, _ = c.str(k)
		case "virtual_router_id":
			in.VirtualRouterID, _ = c.integer(k, 1, 255)
		case "priority":
			in.Priority, _ = c.integer(k, 1, 255)
		case "advert_int":
			in.AdvertInt, _ = c.timer(k)
			advert = k
		case "version":
			in.Version, _ = c.integer(k, 2, 3)
			versionSet = true
		case "nopreempt":
			if c.args(k, 0, 0) {
				in.Preempt = false
			}
		case "preempt":
			in.Preempt = c.args(k, 0, 0)
		case "preempt_delay":
			in.PreemptDelay, _ = c.timer(k)
		case "authentication":
			in.Auth = c.auth(k)
		case "virtual_ipaddress":
			for _, v := range c.virtualIPs(k) {
				if i := slices.IndexFunc(in.VirtualIPs, func(o service.VirtualIP) bool { return o.Prefix.Addr() == v.Prefix.Addr() }); i >= 0 {
					// keepalived accepts this; the address is added once.
					c.warns = append(c.warns, service.Warning{Pos: v.Source, Msg: fmt.Sprintf("virtual_ipaddress %s is already listed at line %d; this entry is ignored", v.Prefix.Addr(), in.VirtualIPs[i].Source.Line)})
					continue
				}
				in.VirtualIPs = append(in.VirtualIPs, v)
			}
		case "unicast_src_ip", "mcast_src_ip":
			if s, ok := c.str(k); ok {
				in.SourceIP, _ = c.addr(k, k.kw, s)
			}
		case "unicast_peer":
			if !c.block(k) {
				break
			}
			for _, p := range k.children {
				if len(p.args) > 0 || p.block {
					c.errorf(p, "unicast_peer %s: options after the address are not supported by xlb", p.kw)
					continue
				}
				if a, ok := c.addr(p, "unicast_peer", p.kw); ok {
					in.UnicastPeers = append(in.UnicastPeers, a)
				}
			}
		case "track_script":
			in.TrackScripts = append(in.TrackScripts, c.tracks(k)...)
		case "track_interface":
			in.TrackInterfaces = append(in.TrackInterfaces, c.tracks(k)...)
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop":
			c.notify(k, &in.Notify)
		case "garp_master_delay":
			in.GARPMasterDelay, _ = c.timer(k)
		case "garp_master_repeat":
			in.GARPMasterRepeat, _ = c.integer(k, 0, 1<<31-1)
		case "garp_master_refresh":
			in.GARPMasterRefresh, _ = c.timer(k)
		case "garp_lower_prio_repeat":
			in.GARPLowerPrioRepeat, _ = c.integer(k, 0, 1<<31-1)
		case "garp_lower_prio_delay":
			if v, ok := c.timer(k); ok {
				lowerDelay = &v
			}
		case "garp_master_refresh_repeat":
			in.GARPMasterRefreshRepeat, _ = c.integer(k, 1, 1<<31-1)
		case "check_unicast_src":
			in.CheckUnicastSrc = c.args(k, 0, 0)
		case "lower_prio_no_advert":
			in.LowerPrioNoAdvert, _ = c.boolean(k)
		case "higher_prio_send_advert":
			in.HigherPrioSendAdvert, _ = c.boolean(k)
		case "dont_track_primary":
			in.DontTrackPrimary = c.args(k, 0, 0)
		case "skip_check_adv_addr":
			in.SkipCheckAdvAddr, _ = c.boolean(k)
		case "virtual_ipaddress_excluded":
			c.unsupported(k, "list the addresses in virtual_ipaddress")
		case "virtual_routes", "virtual_rules", "track_file", "track_process", "track_bfd", "use_vmac", "vmac_xmit_base", "track_src_ip":
			c.unsupported(k, "xlb's VRRP floats addresses only")
		default:
			if ignoredVRRP[k.kw] {
				c.ignored(k)
			} else {
				c.unknown(k, "vrrp_instance")
			}
		}
	}
	// The second lower-priority burst comes garp_master_delay later
	// unless told otherwise.
	if in.GARPLowerPrioRepeat > 0 {
		in.GARPLowerPrioDelay = in.GARPMasterDelay
		if c.defaults.garpLowerDelay != nil {
			in.GARPLowerPrioDelay = *c.defaults.garpLowerDelay
		}
		if lowerDelay != nil {
			in.GARPLowerPrioDelay = *lowerDelay
		}
	}
	// keepalived runs IPv6 instances as VRRPv3 whatever the default.
	if !versionSet && len(in.VirtualIPs) > 0 && in.VirtualIPs[0].Prefix.Addr().Is6() {
		in.Version = 3
	}
	if advert != nil {
		in.AdvertInt = c.advertInt(advert, in.AdvertInt, in.Version)
	}
	return in, len(c.errs) == errs
}

// advertInt fits an advert_int into what the version's packets carry, as
// keepalived does, with a warning: VRRPv2 whole seconds up to 255, VRRPv3
// centiseconds up to 40.95 s, rounded to the nearest and at least one
// unit. What is left out of range the model's validation refuses.
func (c *converter) advertInt(k *node, d time.Duration, version int) time.Duration {
	unit, top := 10*time.Millisecond, 4095*10*time.Millisecond
	if version == 2 {
		unit, top = time.Second, 255*time.Second
	}
	switch {
	case d <= 0:
		return d
	case d > top:
		c.warnf(k, "advert_int %s is more than VRRPv%d carries: using %s, as keepalived does", d, version, top)
		return top
	case d%unit != 0:
		r := max(d.Round(unit), unit)
		c.warnf(k, "advert_int %s is not a whole number of %s, the unit of VRRPv%d: using %s, as keepalived does", d, unit, version, r)
		return r
	}
	return d
}

func (c *converter) auth(n *node) *service.VRRPAuth {
	if !c.block(n) {
		return nil
	}
	a := &service.VRRPAuth{}
	typed := false
	for _, k := range n.children {
		switch k.kw {
		case "auth_type":
			typed = true
			if v, ok := c.str(k); ok {
				switch v {
				case "PASS":
					a.Type = v
				case "AH":
					c.errorf(k, "auth_type AH is not supported by xlb; use PASS or no authentication")
				default:
					c.errorf(k, "auth_type %q is not PASS or AH", v)
				}
			}
		case "auth_pass":
			if v, ok := c.str(k); ok {
				if len(v) > 8 {
					// keepalived does the same, so its peers expect the
					// truncated password.
					c.warnf(k, "auth_pass is longer than 8 characters; truncated to 8, as keepalived does")
					v = v[:8]
				}
				a.Pass = v
			}
		default:
			c.unknown(k, "authentication")
		}
	}
	if !typed {
		c.errorf(n, "authentication has no auth_type")
	}
	return a
}

func (c *converter) virtualIPs(n *node) []service.VirtualIP {
	if !c.block(n) {
		return nil
	}
	var out []service.VirtualIP
	for _, k := range n.children {
		if k.block {
			c.errorf(k, "%s does not take a block", k.kw)
			continue
		}
		v := service.VirtualIP{Source: k.pos}
		var err error
		if strings.Contains(k.kw, "/") {
			v.Prefix, err = netip.ParsePrefix(k.kw)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(k.kw)
			v.Prefix = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil || v.Prefix.Addr().Zone() != "" {
			c.errorf(k, "virtual_ipaddress: %q is not an IP address or prefix", k.kw)
			continue
		}
		for i := 0; i < len(k.args); i++ {
			opt := k.args[i]
			switch opt {
			case "dev", "label", "brd", "broadcast", "scope", "preferred_lft", "track_group":
				if i+1 >= len(k.args) {
					c.errorf(k, "virtual_ipaddress %s: %s needs a value", k.kw, opt)
					break
				}
				i++
				switch opt {
				case "dev":
					v.Dev = k.args[i]
				case "label":
					v.Label = k.args[i]
				case "preferred_lft":
					if k.args[i] == "forever" {
						v.PreferredLft = new(time.Duration(foreverLft))
					} else if n, err := strconv.ParseUint(k.args[i], 10, 32); err == nil {
						v.PreferredLft = new(time.Duration(n) * time.Second)
					} else {
						c.errorf(k, "virtual_ipaddress %s: preferred_lft %q is not a number of seconds or forever", k.kw, k.args[i])
					}
				default:
					c.warnf(k, "virtual_ipaddress %s: %s is not used by xlb (ignored)", k.kw, opt)
				}
			case "no_track", "home", "-nodad", "nodad", "noprefixroute", "autojoin":
				c.warnf(k, "virtual_ipaddress %s: %s is not used by xlb (ignored)", k.kw, opt)
			default:
				c.errorf(k, "virtual_ipaddress %s: unknown option %q", k.kw, opt)
			}
		}
		out = append(out, v)
	}
	return out
}

// foreverLft is `preferred_lft forever`, the kernel's infinite lifetime in
// seconds.
const foreverLft = 0xffffffff * time.Second

// tracks reads a track_script or track_interface block: one name per
// line with an optional "weight N". A missing weight is marked with
// noWeight until resolveTrackWeights fills it.
func (c *converter) tracks(n *node) []service.Track {
	if !c.block(n) {
		return nil
	}
	var out []service.Track
	for _, k := range n.children {
		t := service.Track{Name: k.kw, Source: k.pos}
		if n.kw == "track_script" {
			t.Weight = noWeight
		}
		switch {
		case k.block:
			c.errorf(k, "%s does not take a block", k.kw)
			continue
		case len(k.args) == 0:
		case k.args[0] == "weight" && (len(k.args) == 2 || len(k.args) == 3 && k.args[2] == "reverse"):
			w, ok := c.intValue(k, n.kw+" "+k.kw+" weight", k.args[1], -253, 253)
			if !ok {
				continue
			}
			if len(k.args) == 3 {
				w = -w
			}
			t.Weight = w
		default:
			c.errorf(k, "%s %s: want \"weight N\" after the name, got %q", n.kw, k.kw, strings.Join(k.args, " "))
			continue
		}
		out = append(out, t)
	}
	return out
}

// noWeight marks a track_script entry without its own weight; it is out
// of the valid range so a missed resolution fails validation.
const noWeight = 1 << 30

func resolveTrackWeights(cfg *service.Config) {
	weights := map[string]int{}
	for _, s := range cfg.Scripts {
		weights[s.Name] = s.Weight
	}
	for i := range cfg.VRRP {
		for j := range cfg.VRRP[i].TrackScripts {
			t := &cfg.VRRP[i].TrackScripts[j]
			if t.Weight == noWeight {
				t.Weight = weights[t.Name]
			}
		}
	}
}

func (c *converter) notify(k *node, nf *service.Notify) {
	if !c.userScript(k, &nf.User, *nf != (service.Notify{}), "an earlier notify script of this block", "a block's notify scripts") {
		return
	}
	switch k.kw {
	case "notify":
		nf.Any = k.args[0]
	case "notify_master":
		nf.Master = k.args[0]
	case "notify_backup":
		nf.Backup = k.args[0]
	case "notify_fault":
		nf.Fault = k.args[0]
	case "notify_stop":
		nf.Stop = k.args[0]
	}
}

// userScript reads "KEYWORD SCRIPT [USER [GROUP]]" for a block whose
// scripts xlb runs as one user, kept in *user once an earlier script of
// the block set it (had). A script naming another user is refused, rather
// than run as the wrong one: the error names the earlier script (other)
// and the scripts that share the user (shared). Without its own user a
// script runs as global_defs' script_user.
func (c *converter) userScript(k *node, user *string, had bool, other, shared string) bool {
	if !c.args(k, 1, 3) {
		return false
	}
	u := c.defaults.scriptUser
	if len(k.args) > 1 {
		u = strings.Join(k.args[1:], " ")
	}
	if had && *user != u {
		c.errorf(k, "%s runs as %s, %s as %s; xlb runs %s as one user", k.kw, userName(u), other, userName(*user), shared)
		return false
	}
	*user = u
	return true
}

// userName names a script user for a message; empty is xlb's default.
func userName(u string) string {
	if u == "" {
		return "the default user"
	}
	return strconv.Quote(u)
}

func (c *converter) syncGroup(n *node) (service.SyncGroup, bool) {
	g := service.SyncGroup{Source: n.pos}
	errs := len(c.errs)
	if len(n.args) != 1 {
		c.errorf(n, "vrrp_sync_group needs one name, got %d", len(n.args))
		return g, false
	}
	g.Name = n.args[0]
	if !c.block(n) {
		return g, false
	}
	for _, k := range n.children {
		switch k.kw {
		case "group":
			if !c.block(k) {
				break
			}
			for _, m := range k.children {
				if m.block || len(m.args) > 0 {
					c.errorf(m, "group: want one vrrp_instance name per line")
					continue
				}
				g.Instances = append(g.Instances, m.kw)
			}
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop":
			c.notify(k, &g.Notify)
		case "smtp_alert", "global_tracking", "sync_group_tracking_weight":
			c.ignored(k)
		case "track_script", "track_interface", "track_file", "track_process", "track_bfd":
			c.unsupported(k, "track in each vrrp_instance")
		default:
			c.unknown(k, "vrrp_sync_group")
		}
	}
	return g, len(c.errs) == errs
}

func (c *converter) vrrpScript(n *node) (service.VRRPScript, bool) {
	s := service.VRRPScript{
		Interval: service.DefaultVRRPScriptInterval,
		Rise:     service.DefaultVRRPScriptRiseOrFall,
		Fall:     service.DefaultVRRPScriptRiseOrFall,
		User:     c.defaults.scriptUser,
		Source:   n.pos,
	}
	errs := len(c.errs)
	if len(n.args) != 1 {
		c.errorf(n, "vrrp_script needs one name, got %d", len(n.args))
		return s, false
	}
	s.Name = n.args[0]
	if !c.block(n) {
		return s, false
	}
	for _, k := range n.children {
		s.Keywords.Set(k.kw, k.pos)
		switch k.kw {
		case "script":
			// keepalived takes the rest of the line as the command, quoted
			// or not.
			if c.args(k, 1, 64) {
				s.Script = strings.Join(k.args, " ")
			}
		case "interval":
			s.Interval, _ = c.timer(k)
		case "timeout":
			s.Timeout, _ = c.timer(k)
		case "weight":
			if !c.args(k, 1, 2) {
				break
			}
			if w, ok := c.intValue(k, "weight", k.args[0], -253, 253); ok {
				s.Weight = w
				if len(k.args) == 2 {
					if k.args[1] != "reverse" {
						c.errorf(k, "weight: %q is not reverse", k.args[1])
					}
					s.Weight = -w
				}
			}
		case "rise":
			s.Rise, _ = c.integer(k, 1, 1<<31-1)
		case "fall":
			s.Fall, _ = c.integer(k, 1, 1<<31-1)
		case "user":
			if c.args(k, 1, 2) {
				s.User = strings.Join(k.args, " ")
			}
		case "init_fail":
			s.InitFail = c.args(k, 0, 0)
		default:
			c.unknown(k, "vrrp_script")
		}
	}
	return s, len(c.errs) == errs
}
