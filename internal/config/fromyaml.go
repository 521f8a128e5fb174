package config

import (
	"time"

	"fmt"
	"strings"

	"github.com/xlb-project/xlb/internal/service"
)

// fromYAML converts the decoded document into the model, applying the same
// defaults the keepalived reader applies (keepalived 2.2.7's), except that
// the protocol must be written and the scheduler defaults to plain
// weighted Maglev.
type fromYAML struct {
	file string
	errs []error
}

func (y *fromYAML) pos(line int) service.Pos { return service.Pos{File: y.file, Line: line} }

func (y *fromYAML) errorf(line int, format string, args ...any) {
	y.errs = append(y.errs, &service.Error{Pos: y.pos(line), Msg: fmt.Sprintf(format, args...)})
}

func (y *fromYAML) config(doc *fileYAML) *service.Config {
	cfg := &service.Config{}
	if g := doc.Global; g != nil {
		cfg.Global = service.Global{RouterID: g.RouterID.v, Source: y.pos(g.RouterID.line)}
		if f := g.FlapDamping; f != nil {
			cfg.Global.FlapDamping = service.FlapDamping{
				Changes: f.Changes, Window: f.Window.v, HoldDown: f.HoldDown.v,
				Source: y.pos(max(f.Window.line, f.HoldDown.line, g.RouterID.line)),
			}
		}
		if t := g.Timeouts; t != nil {
			to := &cfg.Global.Timeouts
			line := 0
			for _, f := range []struct {
				y *yDuration
				d *time.Duration
			}{{t.TCP, &to.TCP}, {t.TCPFin, &to.TCPFin}, {t.UDP, &to.UDP}, {t.SynRecv, &to.SynRecv}, {t.Close, &to.Close}} {
				if f.y == nil {
					continue
				}
				if f.y.v <= 0 {
					y.errorf(f.y.line, "timeouts: %s is not positive", f.y.v)
				}
				*f.d = f.y.v
				line = max(line, f.y.line)
			}
			to.Source = y.pos(line)
		}
	}
	for i := range doc.Services {
		cfg.Services = append(cfg.Services, y.service(&doc.Services[i]))
	}
	for _, s := range doc.Scripts {
		sc := service.VRRPScript{
			Name: s.Name.v, Script: s.Script, Weight: s.Weight, InitFail: s.InitFail, User: s.User, Source: y.pos(s.Name.line),
			Interval: service.DefaultVRRPScriptInterval,
			Rise:     service.DefaultVRRPScriptRiseOrFall, Fall: service.DefaultVRRPScriptRiseOrFall,
		}
		setDur(&sc.Interval, s.Interval)
		setDur(&sc.Timeout, s.Timeout)
		setInt(&sc.Rise, s.Rise)
		setInt(&sc.Fall, s.Fall)
		cfg.Scripts = append(cfg.Scripts, sc)
	}
	weights := map[string]int{}
	for _, s := range cfg.Scripts {
		weights[s.Name] = s.Weight
	}
	for i := range doc.VRRP {
		cfg.VRRP = append(cfg.VRRP, y.instance(&doc.VRRP[i], weights))
	}
	for _, g := range doc.SyncGroups {
		sg := service.SyncGroup{Name: g.Name.v, Instances: g.Instances, Source: y.pos(g.Name.line)}
		if g.Notify != nil {
			sg.Notify = service.Notify(*g.Notify)
		}
		cfg.SyncGroups = append(cfg.SyncGroups, sg)
	}
	if doc.BGP != nil {
		cfg.BGP = y.bgp(doc.BGP)
	}
	return cfg
}

// bgp converts the bgp section; the section's position is its local_as
// line, each peer's and VIP's its address line.
func (y *fromYAML) bgp(by *bgpYAML) *service.BGP {
	b := &service.BGP{
		LocalAS: by.LocalAS.v, RouterID: by.RouterID.v, ListenPort: by.ListenPort, MED: by.MED,
		HoldTime: service.DefaultBGPHoldTime, KeepaliveTime: service.DefaultBGPKeepaliveTime,
		ConnectRetry: service.DefaultBGPConnectRetry, GracefulLeave: service.DefaultBGPGracefulLeave,
		Communities: communities(by.Communities),
		Source:      y.pos(max(by.LocalAS.line, by.RouterID.line)),
	}
	if by.LocalAS.line > 0 {
		b.Source = y.pos(by.LocalAS.line)
	}
	setDur(&b.HoldTime, by.HoldTime)
	// A hold time set without a keepalive gets RFC 4271's third of it.
	if by.HoldTime != nil && by.KeepaliveTime == nil {
		b.KeepaliveTime = (by.HoldTime.v / 3).Truncate(time.Second)
	}
	setDur(&b.KeepaliveTime, by.KeepaliveTime)
	setDur(&b.ConnectRetry, by.ConnectRetry)
	setDur(&b.GracefulLeave, by.GracefulLeave)
	for _, p := range by.Peers {
		bp := service.BGPPeer{Address: p.Address.v, AS: p.AS, Port: p.Port, Password: p.Password, Multihop: p.Multihop, Source: y.pos(p.Address.line)}
		if p.LocalAddress != nil {
			bp.LocalAddress = p.LocalAddress.v
		}
		for _, f := range p.Families {
			bp.Families = append(bp.Families, service.Family(f))
		}
		b.Peers = append(b.Peers, bp)
	}
	for _, v := range by.VIPs {
		bv := service.BGPVIP{VIP: v.VIP.v, MED: v.MED, Source: y.pos(v.VIP.line)}
		if v.Communities != nil {
			bv.Communities = communities(v.Communities)
		}
		b.VIPs = append(b.VIPs, bv)
	}
	return b
}

func communities(cs []yCommunity) []service.Community {
	if cs == nil {
		return nil
	}
	out := make([]service.Community, len(cs))
	for i, c := range cs {
		out[i] = c.v
	}
	return out
}

func setDur(dst *time.Duration, src *yDuration) {
	if src != nil {
		*dst = src.v
	}
}

// setDurAt is setDur that also records where the keyword was written.
func (y *fromYAML) setDurAt(dst *time.Duration, src *yDuration, kws *service.Keywords, kw string) {
	if src != nil {
		*dst = src.v
		kws.Set(kw, y.pos(src.line))
	}
}

// setIntAt sets dst from src, if given, and records where it was written.
func (y *fromYAML) setIntAt(dst *int, src *yInt, kws *service.Keywords, kw string) {
	if src != nil {
		*dst = src.v
		kws.Set(kw, y.pos(src.line))
	}
}

func setInt(dst *int, src *int) {
	if src != nil {
		*dst = *src
	}
}

func (y *fromYAML) service(sy *serviceYAML) service.Service {
	line := sy.VIP.line
	s := service.Service{
		VIP:       sy.VIP.v,
		Scheduler: sy.Scheduler,
		DelayLoop: service.DefaultDelayLoop,
		Source:    y.pos(line),
	}
	if sy.Port == nil {
		y.errorf(line, "service %s: port is missing (0 serves all ports)", sy.VIP.v)
	} else {
		s.Port = *sy.Port
	}
	if sy.Protocol.v == "" {
		y.errorf(line, "service %s: protocol is missing (tcp or udp)", sy.VIP.v)
	} else if p, err := service.ParseProto(sy.Protocol.v); err != nil {
		y.errorf(sy.Protocol.line, "service %s: %v", sy.VIP.v, err)
	} else {
		s.Proto = p
	}
	if s.Scheduler == "" {
		s.Scheduler = "maglev"
	}
	y.setDurAt(&s.Persistence, sy.Persistence, &s.Keywords, "persistence_timeout")
	y.setDurAt(&s.DelayLoop, sy.DelayLoop, &s.Keywords, "delay_loop")
	setDur(&s.SlowStart, sy.SlowStart)
	y.setIntAt(&s.VLAN, sy.VLAN, &s.Keywords, "vlan")
	s.Quorum, s.Hysteresis = sy.Quorum, sy.Hysteresis
	s.QuorumUp, s.QuorumDown, s.QuorumUser = sy.QuorumUp, sy.QuorumDown, sy.QuorumUser
	s.Omega = sy.Omega
	// The service's forward is its servers' default, as a virtual
	// server's lvs_method is in keepalived.conf.
	name := "service " + sy.VIP.v.String()
	def, defLine := y.forward(name, sy.Forward, service.Forward{}, 0, line)
	if ss := sy.SorryServer; ss != nil {
		s.SorryServer = &service.SorryServer{Addr: ss.Address.v, Port: s.Port, Inhibit: ss.Inhibit, Source: y.pos(ss.Address.line)}
		if ss.Port != nil {
			s.SorryServer.Port = *ss.Port
		}
		var fline int
		s.SorryServer.Forward, fline = y.forward(name+": sorry server", ss.Forward, def, defLine, ss.Address.line)
		if fline > 0 {
			s.Keywords.Set("sorry_server_lvs_method", y.pos(fline))
		}
	}
	for _, by := range sy.Backends {
		b := service.Backend{
			Addr: by.Address.v, Port: s.Port, Weight: service.DefaultWeight,
			InhibitOnFailure: by.InhibitOnFailure, NotifyUp: by.NotifyUp, NotifyDown: by.NotifyDown, NotifyUser: by.NotifyUser,
			Source: y.pos(by.Address.line),
		}
		if b.Source.Line == 0 {
			b.Source = s.Source
		}
		if by.Port != nil {
			b.Port = *by.Port
		}
		y.setIntAt(&b.Weight, by.Weight, &b.Keywords, "weight")
		var fline int
		b.Forward, fline = y.forward(name+": backend "+b.Addr.String(), by.Forward, def, defLine, b.Source.Line)
		if fline > 0 {
			b.Keywords.Set("lvs_method", y.pos(fline))
		}
		for i := range by.Checks {
			if c, ok := y.check(&by.Checks[i], s.DelayLoop, b.Source.Line); ok {
				b.Checks = append(b.Checks, c)
			}
		}
		s.Backends = append(s.Backends, b)
	}
	return s
}

// forward converts the forward of the object name, or gives def (written
// at defLine) when fy is absent, and returns where the method was written
// (0: nowhere; at, the object's own line, when fy is empty). The model's
// validation checks the combination of its fields, at that line.
func (y *fromYAML) forward(name string, fy *forwardYAML, def service.Forward, defLine, at int) (service.Forward, int) {
	if fy == nil {
		return def, defLine
	}
	line := fy.Method.line
	for _, l := range []int{fy.encapLine(), fy.portLine(), at} {
		if line == 0 {
			line = l
		}
	}
	if !fy.Method.set {
		if fy.Method.line == 0 {
			y.errorf(line, "%s: forward: method is missing (route or tunnel)", name)
		}
		return def, line
	}
	f := service.Forward{Method: fy.Method.v, Csum: fy.Csum}
	if fy.Encap != nil {
		f.Encap = fy.Encap.v
	}
	if p := fy.Port; p != nil {
		if p.v < 1 || p.v > 65535 {
			y.errorf(p.line, "%s: forward: port %d is outside 1..65535", name, p.v)
			return def, line
		}
		f.Port = uint16(p.v)
	}
	return f, line
}

func (fy *forwardYAML) encapLine() int {
	if fy.Encap == nil {
		return 0
	}
	return fy.Encap.line
}

func (fy *forwardYAML) portLine() int {
	if fy.Port == nil {
		return 0
	}
	return fy.Port.line
}

func (y *fromYAML) check(cy *checkYAML, delayLoop time.Duration, line int) (service.Check, bool) {
	if cy.Type.line != 0 {
		line = cy.Type.line
	}
	kind, err := service.ParseCheckKind(cy.Type.v)
	if err != nil {
		y.errorf(line, "%v", err)
		return service.Check{}, false
	}
	web := kind == service.CheckHTTP || kind == service.CheckSSL
	c := service.Check{
		Kind: kind, ConnectPort: cy.ConnectPort, BindPort: cy.BindPort, BindIf: cy.BindIf, VirtualHost: cy.VirtualHost,
		EnableSNI: cy.EnableSNI, MiscPath: cy.MiscPath, MiscDynamic: cy.MiscDynamic, User: cy.User, Alpha: cy.Alpha,
		LogAllFailures: cy.LogAllFailures,
		DelayLoop:      delayLoop, Retry: service.DefaultRetry, DelayBeforeRetry: service.DefaultDelayBeforeRetry,
		Source: y.pos(line),
	}
	if kind != service.CheckMisc {
		c.ConnectTimeout = service.DefaultConnectTimeout
	} else {
		c.Retry = 0
	}
	if web {
		c.DelayBeforeRetry = service.DefaultHTTPDelayBeforeRetry
	}
	if cy.ConnectIP != nil {
		c.ConnectIP = cy.ConnectIP.v
	}
	if cy.BindTo != nil {
		c.BindTo = cy.BindTo.v
	}
	setDur(&c.ConnectTimeout, cy.ConnectTimeout)
	setInt(&c.Retry, cy.Retry)
	c.Rise = cy.Rise
	setDur(&c.DelayBeforeRetry, cy.DelayBeforeRetry)
	setDur(&c.DelayLoop, cy.DelayLoop)
	c.Warmup = c.DelayLoop
	setDur(&c.Warmup, cy.Warmup)
	setDur(&c.MiscTimeout, cy.MiscTimeout)
	for _, uy := range cy.URLs {
		u := service.URL{Path: uy.Path.v, Digest: uy.Digest, VirtualHost: uy.VirtualHost, Source: y.pos(uy.Path.line)}
		if u.Source.Line == 0 {
			u.Source = c.Source
		}
		for _, sc := range uy.StatusCodes {
			r, err := service.ParseStatusRange(strings.TrimSpace(sc))
			if err != nil {
				y.errorf(u.Source.Line, "url %s: %v", u.Path, err)
				continue
			}
			u.StatusCodes = append(u.StatusCodes, r)
		}
		c.URLs = append(c.URLs, u)
	}
	return c, true
}

func (y *fromYAML) instance(iy *instanceYAML, weights map[string]int) service.VRRPInstance {
	in := service.VRRPInstance{
		Name: iy.Name.v, State: iy.State, Interface: iy.Interface, VirtualRouterID: iy.VirtualRouterID,
		Priority: service.DefaultVRRPPriority, AdvertInt: service.DefaultVRRPAdvertInt,
		Version: service.DefaultVRRPVersion, Preempt: true,
		GARPMasterDelay: service.DefaultGARPMasterDelay, GARPMasterRepeat: service.DefaultGARPMasterRepeat,
		Source: y.pos(iy.Name.line),
	}
	if in.State == "" {
		in.State = "BACKUP"
	}
	y.setIntAt(&in.Priority, iy.Priority, &in.Keywords, "priority")
	y.setDurAt(&in.AdvertInt, iy.AdvertInt, &in.Keywords, "advert_int")
	setInt(&in.Version, iy.Version)
	if iy.Preempt != nil {
		in.Preempt = *iy.Preempt
	}
	setDur(&in.PreemptDelay, iy.PreemptDelay)
	if iy.Auth != nil {
		in.Auth = &service.VRRPAuth{Type: iy.Auth.Type, Pass: iy.Auth.Pass}
	}
	for _, v := range iy.VirtualIPs {
		vip := service.VirtualIP{Prefix: v.Prefix.v, Dev: v.Dev, Label: v.Label, Source: y.pos(v.Prefix.line)}
		if v.PreferredLft != nil {
			vip.PreferredLft = new(v.PreferredLft.v)
		}
		in.VirtualIPs = append(in.VirtualIPs, vip)
	}
	if iy.Version == nil && len(in.VirtualIPs) > 0 && in.VirtualIPs[0].Prefix.Addr().Is6() {
		in.Version = 3
	}
	if iy.SourceIP != nil {
		in.SourceIP = iy.SourceIP.v
	}
	for _, p := range iy.UnicastPeers {
		in.UnicastPeers = append(in.UnicastPeers, p.v)
	}
	for _, t := range iy.TrackScripts {
		tr := service.Track{Name: t.Name.v, Weight: weights[t.Name.v], Source: y.pos(t.Name.line)}
		setInt(&tr.Weight, t.Weight)
		in.TrackScripts = append(in.TrackScripts, tr)
	}
	for _, t := range iy.TrackInterfaces {
		tr := service.Track{Name: t.Name.v, Source: y.pos(t.Name.line)}
		setInt(&tr.Weight, t.Weight)
		in.TrackInterfaces = append(in.TrackInterfaces, tr)
	}
	setDur(&in.GARPMasterDelay, iy.GARPMasterDelay)
	setInt(&in.GARPMasterRepeat, iy.GARPMasterRepeat)
	setDur(&in.GARPMasterRefresh, iy.GARPMasterRefresh)
	in.GARPMasterRefreshRepeat = iy.GARPRefreshRepeat
	in.GARPLowerPrioRepeat = iy.GARPLowerRepeat
	if in.GARPLowerPrioRepeat > 0 {
		in.GARPLowerPrioDelay = in.GARPMasterDelay
		setDur(&in.GARPLowerPrioDelay, iy.GARPLowerDelay)
	}
	in.SkipCheckAdvAddr = iy.SkipCheckAdvAddr
	in.DontTrackPrimary = iy.DontTrackPrimary
	in.CheckUnicastSrc = iy.CheckUnicastSrc
	in.LowerPrioNoAdvert = iy.LowerPrioNoAdvert
	in.HigherPrioSendAdvert = iy.HigherPrioAdvert
	if iy.Notify != nil {
		in.Notify = service.Notify(*iy.Notify)
	}
	return in
}
