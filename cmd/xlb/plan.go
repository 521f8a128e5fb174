package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/slowstart"
)

// writePlan prints what xlb would serve from cfg, laid out like ipvsadm's
// listing so keepalived users recognise it.
func writePlan(w io.Writer, cfg *service.Config) {
	if f := cfg.Global.FlapDamping; f.On() {
		fmt.Fprintf(w, "flap damping: a backend changing state more than %d times in %s is held down until %s pass without a change\n", f.Changes, f.Window, f.HoldDown)
		if cfg.Global.RouterID == "" {
			fmt.Fprintln(w)
		}
	}
	if cfg.Global.RouterID != "" {
		fmt.Fprintf(w, "router_id %s\n\n", cfg.Global.RouterID)
	}
	fmt.Fprintf(w, "services: %d\n", len(cfg.Services))
	for i := range cfg.Services {
		writeService(w, &cfg.Services[i])
	}
	if len(cfg.Scripts) > 0 {
		fmt.Fprintf(w, "\nvrrp scripts: %d\n", len(cfg.Scripts))
		for _, s := range cfg.Scripts {
			fmt.Fprintf(w, "  %s: %q every %s", s.Name, s.Script, s.Interval)
			if s.Timeout > 0 {
				fmt.Fprintf(w, ", timeout %s", s.Timeout)
			}
			fmt.Fprintf(w, ", weight %d, rise %d, fall %d", s.Weight, s.Rise, s.Fall)
			if s.InitFail {
				fmt.Fprint(w, ", starts failed")
			}
			if s.User != "" {
				fmt.Fprintf(w, ", as %s", s.User)
			}
			fmt.Fprintf(w, "  (%s)\n", s.Source)
		}
	}
	if len(cfg.VRRP) > 0 {
		fmt.Fprintf(w, "\nvrrp instances: %d\n", len(cfg.VRRP))
		for i := range cfg.VRRP {
			writeInstance(w, &cfg.VRRP[i])
		}
	}
	if len(cfg.SyncGroups) > 0 {
		fmt.Fprintf(w, "\nvrrp sync groups: %d\n", len(cfg.SyncGroups))
		for _, g := range cfg.SyncGroups {
			fmt.Fprintf(w, "  %s: %s  (%s)\n", g.Name, strings.Join(g.Instances, ", "), g.Source)
			writeNotify(w, "    ", g.Notify)
		}
	}
	if b := cfg.BGP; b != nil {
		writeBGP(w, b)
	}
}

// writeBGP prints the bgp section: the sessions and how each VIP is
// announced while it can be served.
func writeBGP(w io.Writer, b *service.BGP) {
	fmt.Fprintf(w, "\nbgp: local as %d, router id %s, hold %s, keepalive %s, connect retry %s, graceful leave %s  (%s)\n",
		b.LocalAS, b.RouterID, b.HoldTime, b.KeepaliveTime, b.ConnectRetry, b.GracefulLeave, b.Source)
	if b.ListenPort != 0 {
		fmt.Fprintf(w, "  listens on port %d\n", b.ListenPort)
	}
	for _, p := range b.Peers {
		fmt.Fprintf(w, "  peer %s as %d", p.Address, p.AS)
		if p.Port != 0 {
			fmt.Fprintf(w, " port %d", p.Port)
		}
		fams := make([]string, 0, 2)
		for _, f := range p.PeerFamilies() {
			fams = append(fams, string(f))
		}
		fmt.Fprintf(w, ", %s unicast", strings.Join(fams, "+"))
		if p.Password != "" {
			fmt.Fprint(w, ", TCP MD5")
		}
		if p.Multihop > 0 {
			fmt.Fprintf(w, ", multihop %d", p.Multihop)
		}
		if p.LocalAddress.IsValid() {
			fmt.Fprintf(w, ", from %s", p.LocalAddress)
		}
		fmt.Fprintf(w, "  (%s)\n", p.Source)
	}
	for _, v := range b.VIPs {
		comms, med := b.Attrs(v.VIP)
		fmt.Fprintf(w, "  vip %s: med %d, communities %v  (%s)\n", v.VIP, med, comms, v.Source)
	}
	comms, med := b.Attrs(netip.Addr{})
	fmt.Fprintf(w, "  other vips: med %d, communities %v; announced while served, next hop self\n", med, comms)
}

func writeService(w io.Writer, s *service.Service) {
	fmt.Fprintf(w, "\n%s  (%s)\n", s.Key(), s.Source)
	sourceOnly, note, err := service.SchedulerPlan(s.Scheduler)
	switch {
	case err != nil:
		fmt.Fprintf(w, "  scheduler %s: %v\n", s.Scheduler, err)
	case s.Persistence > 0:
		fmt.Fprintf(w, "  scheduler %s -> Maglev on the client address (persistence %s: a client stays on its backend while the backend set is unchanged)\n", s.Scheduler, s.Persistence)
	case sourceOnly:
		fmt.Fprintf(w, "  scheduler %s -> Maglev on the client address\n", s.Scheduler)
	default:
		fmt.Fprintf(w, "  scheduler %s -> weighted Maglev on the connection\n", s.Scheduler)
	}
	if note != "" {
		fmt.Fprintf(w, "  note: %s\n", note)
	}
	if s.Port == 0 {
		fmt.Fprintf(w, "  port 0: every port of %s\n", s.VIP)
	}
	if s.VLAN != 0 {
		fmt.Fprintf(w, "  vlan %d: only frames tagged with VLAN %d are balanced; the VIP's other frames reach this host's stack\n", s.VLAN, s.VLAN)
	}
	fmt.Fprintf(w, "  health checks every %s\n", s.DelayLoop)
	if s.SlowStart > 0 {
		fmt.Fprintf(w, "  slow start: a server back up ramps to its weight over %s (%d Maglev rebuilds)\n", s.SlowStart, slowstart.Steps)
	}
	if ss := s.SorryServer; ss != nil {
		inhibit := ""
		if ss.Inhibit {
			inhibit = ", inhibit"
		}
		fmt.Fprintf(w, "  sorry server %s%s\n", netip.AddrPortFrom(ss.Addr, ss.Port), inhibit)
		fmt.Fprintf(w, "       %s\n", forwardLine(ss.Forward, ss.Addr.Is6()))
	}
	if s.Quorum > 0 {
		fmt.Fprintf(w, "  quorum %d live weight, hysteresis %d\n", s.Quorum, s.Hysteresis)
	}
	writeScripts(w, "  ", s.QuorumUser, [2]string{"quorum_up", s.QuorumUp}, [2]string{"quorum_down", s.QuorumDown})
	if s.Omega {
		fmt.Fprintf(w, "  omega: notify_down and quorum_down run when xlb stops\n")
	}
	for i := range s.Backends {
		b := &s.Backends[i]
		onFail := "removed on failure"
		if b.InhibitOnFailure {
			onFail = "weight 0 on failure"
		}
		fmt.Fprintf(w, "  -> %s  weight %d, %s  (%s)\n", b.AddrPort(), b.Weight, onFail, b.Source)
		fmt.Fprintf(w, "       %s\n", forwardLine(b.Forward, b.Addr.Is6()))
		if len(b.Checks) == 0 {
			fmt.Fprintf(w, "       no health check: always up\n")
		}
		for j := range b.Checks {
			fmt.Fprintf(w, "       %s\n", checkLine(b, &b.Checks[j]))
		}
		writeScripts(w, "       ", b.NotifyUser, [2]string{"notify_up", b.NotifyUp}, [2]string{"notify_down", b.NotifyDown})
	}
}

// forwardLine says how a server is reached and what that asks of it: the
// setup scripts/realserver.sh does and, for a tunnel, the MTU its outer
// header takes, which the operator must allow for (docs/config.md).
func forwardLine(f service.Forward, ipv6 bool) string {
	if f.Method != service.Tunnel {
		return "by direct routing: it must be on this balancer's segment and hold the VIP on lo"
	}
	family := "IPv4"
	if ipv6 {
		family = "IPv6"
	}
	how, script := "ipip", "ipip"
	if ipv6 {
		how = "ipip: IPv6 in IPv6"
	}
	if f.Encap == service.GUE {
		sum := "no outer checksum"
		if f.Csum {
			sum = "outer UDP checksum"
		}
		how = fmt.Sprintf("gue to port %d, %s", f.Port, sum)
		script = fmt.Sprintf("gue:%d", f.Port)
	}
	return fmt.Sprintf("by tunnel (%s): it must decapsulate (scripts/realserver.sh --tunnel %s) and hold the VIP on lo; the outer header costs %d bytes of MTU (%s)",
		how, script, f.Overhead(ipv6), family)
}

func checkLine(b *service.Backend, c *service.Check) string {
	var sb strings.Builder
	if c.Kind == service.CheckMisc {
		fmt.Fprintf(&sb, "misc check %q", c.MiscPath)
		if c.MiscTimeout > 0 {
			fmt.Fprintf(&sb, " timeout %s", c.MiscTimeout)
		}
		if c.MiscDynamic {
			sb.WriteString(" dynamic weight")
		}
		if c.User != "" {
			fmt.Fprintf(&sb, " as %s", c.User)
		}
	} else {
		addr, port := b.Addr, b.Port
		if c.ConnectIP.IsValid() {
			addr = c.ConnectIP
		}
		if c.ConnectPort != 0 {
			port = c.ConnectPort
		}
		fmt.Fprintf(&sb, "%s check %s", c.Kind, netip.AddrPortFrom(addr, port))
		if c.BindTo.IsValid() || c.BindPort != 0 {
			fmt.Fprintf(&sb, " from %s", netip.AddrPortFrom(c.BindTo, c.BindPort))
		}
		if c.BindIf != "" {
			fmt.Fprintf(&sb, " via %s", c.BindIf)
		}
		fmt.Fprintf(&sb, " timeout %s", c.ConnectTimeout)
	}
	fmt.Fprintf(&sb, ", every %s, retry %d after %s, warmup up to %s", c.DelayLoop, c.Retry, c.DelayBeforeRetry, c.Warmup)
	if c.Rise > 1 {
		fmt.Fprintf(&sb, ", up after %d successes", c.Rise)
	}
	if c.Alpha {
		sb.WriteString(", starts down (alpha)")
	}
	if c.LogAllFailures {
		sb.WriteString(", logs every failure")
	}
	if c.VirtualHost != "" {
		fmt.Fprintf(&sb, ", host %s", c.VirtualHost)
	}
	if c.EnableSNI {
		sb.WriteString(", sni")
	}
	for _, u := range c.URLs {
		fmt.Fprintf(&sb, "\n         GET %s", u.Path)
		if u.VirtualHost != "" {
			fmt.Fprintf(&sb, " host %s", u.VirtualHost)
		}
		codes := "200-299"
		if len(u.StatusCodes) > 0 {
			var parts []string
			for _, r := range u.StatusCodes {
				parts = append(parts, r.String())
			}
			codes = strings.Join(parts, " ")
		}
		fmt.Fprintf(&sb, " expect status %s", codes)
		if u.Digest != "" {
			fmt.Fprintf(&sb, " and body md5 %s", u.Digest)
		}
	}
	return sb.String()
}

func writeInstance(w io.Writer, in *service.VRRPInstance) {
	fmt.Fprintf(w, "  %s: %s on %s, vrid %d, priority %d, advert every %s, VRRPv%d  (%s)\n",
		in.Name, in.State, in.Interface, in.VirtualRouterID, in.Priority, in.AdvertInt, in.Version, in.Source)
	preempt := "preempt"
	if !in.Preempt {
		preempt = "nopreempt"
	} else if in.PreemptDelay > 0 {
		preempt += " after " + in.PreemptDelay.String()
	}
	fmt.Fprintf(w, "    %s, gratuitous ARP %d after %s", preempt, in.GARPMasterRepeat, in.GARPMasterDelay)
	if in.GARPMasterRefresh > 0 {
		fmt.Fprintf(w, ", refresh every %s", in.GARPMasterRefresh)
		if in.GARPMasterRefreshRepeat > 1 {
			fmt.Fprintf(w, " x%d", in.GARPMasterRefreshRepeat)
		}
	}
	if in.GARPLowerPrioRepeat > 0 {
		fmt.Fprintf(w, ", %d more on hearing a lower priority and again after %s", in.GARPLowerPrioRepeat, in.GARPLowerPrioDelay)
	}
	if in.SkipCheckAdvAddr {
		fmt.Fprint(w, ", addresses unchecked from the same master")
	}
	fmt.Fprintln(w)
	if in.Auth != nil {
		fmt.Fprintf(w, "    authentication %s\n", in.Auth.Type)
	}
	for _, v := range in.VirtualIPs {
		fmt.Fprintf(w, "    vip %s", v.Prefix)
		if v.Dev != "" {
			fmt.Fprintf(w, " dev %s", v.Dev)
		}
		if v.Label != "" {
			fmt.Fprintf(w, " label %s", v.Label)
		}
		if v.Deprecated() {
			// Why the balancer's own connections never leave from it.
			fmt.Fprint(w, " preferred_lft 0 (never a source address)")
		}
		fmt.Fprintln(w)
	}
	if in.SourceIP.IsValid() {
		fmt.Fprintf(w, "    source %s\n", in.SourceIP)
	}
	if len(in.UnicastPeers) > 0 {
		var peers []string
		for _, p := range in.UnicastPeers {
			peers = append(peers, p.String())
		}
		fmt.Fprintf(w, "    unicast to %s", strings.Join(peers, ", "))
		if in.CheckUnicastSrc {
			fmt.Fprint(w, ", accepting only from them")
		}
		fmt.Fprintln(w)
	}
	for _, t := range in.TrackScripts {
		fmt.Fprintf(w, "    track script %s weight %d\n", t.Name, t.Weight)
	}
	for _, t := range in.TrackInterfaces {
		fmt.Fprintf(w, "    track interface %s weight %d\n", t.Name, t.Weight)
	}
	if in.LowerPrioNoAdvert {
		fmt.Fprintf(w, "    as master, does not answer a lower priority at once (lower_prio_no_advert)\n")
	}
	if in.HigherPrioSendAdvert {
		fmt.Fprintf(w, "    as master, advertises once more before yielding to a higher priority (higher_prio_send_advert)\n")
	}
	if in.DontTrackPrimary {
		fmt.Fprintf(w, "    stays out of FAULT when its own interface goes down (dont_track_primary)\n")
	}
	writeNotify(w, "    ", in.Notify)
}

func writeNotify(w io.Writer, indent string, n service.Notify) {
	writeScripts(w, indent, n.User, [2]string{"notify", n.Any}, [2]string{"notify_master", n.Master},
		[2]string{"notify_backup", n.Backup}, [2]string{"notify_fault", n.Fault}, [2]string{"notify_stop", n.Stop})
}

// writeScripts prints each {keyword, script} that is set, one a line, and
// the user they run as.
func writeScripts(w io.Writer, indent, user string, scripts ...[2]string) {
	as := ""
	if user != "" {
		as = " as " + user
	}
	for _, s := range scripts {
		if s[1] != "" {
			fmt.Fprintf(w, "%s%s %q%s\n", indent, s[0], s[1], as)
		}
	}
}
