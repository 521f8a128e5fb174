package config

import (
	"bytes"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xlb-project/xlb/internal/service"
)

// MarshalYAML writes cfg in the native YAML format. Every value is written
// out, defaults included, so the file reads the same whatever the defaults
// of a later xlb version; ParseYAML of the result gives back cfg except
// for source positions.
func MarshalYAML(cfg *service.Config) ([]byte, error) {
	doc := fileYAML{}
	t := cfg.Global.Timeouts
	t.Source = service.Pos{}
	if g := cfg.Global; g.RouterID != "" || g.FlapDamping.On() || t != (service.Timeouts{}) {
		doc.Global = &globalYAML{RouterID: yString{v: g.RouterID}}
		if f := g.FlapDamping; f.On() {
			doc.Global.FlapDamping = &flapYAML{Changes: f.Changes, Window: yDuration{v: f.Window}, HoldDown: yDuration{v: f.HoldDown}}
		}
		if t != (service.Timeouts{}) {
			doc.Global.Timeouts = &timeoutsYAML{TCP: optDur(t.TCP), TCPFin: optDur(t.TCPFin), UDP: optDur(t.UDP), SynRecv: optDur(t.SynRecv), Close: optDur(t.Close)}
		}
	}
	for i := range cfg.Services {
		doc.Services = append(doc.Services, serviceToYAML(&cfg.Services[i]))
	}
	for _, s := range cfg.Scripts {
		doc.Scripts = append(doc.Scripts, scriptYAML{
			Name: yString{v: s.Name}, Script: s.Script, Interval: dur(s.Interval), Timeout: optDur(s.Timeout),
			Weight: s.Weight, Rise: ptr(s.Rise), Fall: ptr(s.Fall), InitFail: s.InitFail, User: s.User,
		})
	}
	for i := range cfg.VRRP {
		doc.VRRP = append(doc.VRRP, instanceToYAML(&cfg.VRRP[i]))
	}
	for _, g := range cfg.SyncGroups {
		doc.SyncGroups = append(doc.SyncGroups, syncGroupYAML{Name: yString{v: g.Name}, Instances: g.Instances, Notify: notifyToYAML(g.Notify)})
	}
	if b := cfg.BGP; b != nil {
		doc.BGP = bgpToYAML(b)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func ptr[T any](v T) *T { return &v }

// optDur omits a zero duration, which for these fields means "none".
func optDur(d time.Duration) *yDuration {
	if d == 0 {
		return nil
	}
	return &yDuration{v: d}
}

func serviceToYAML(s *service.Service) serviceYAML {
	sy := serviceYAML{
		VIP: yAddr{v: s.VIP}, Port: ptr(s.Port), Protocol: yProto{v: s.Proto.String()},
		Scheduler: s.Scheduler, Persistence: optDur(s.Persistence), DelayLoop: dur(s.DelayLoop),
		Quorum: s.Quorum, Hysteresis: s.Hysteresis, QuorumUp: s.QuorumUp, QuorumDown: s.QuorumDown, QuorumUser: s.QuorumUser,
		Omega: s.Omega, SlowStart: optDur(s.SlowStart),
	}
	// A tunnel all backends share is written once, on the service, as
	// keepalived.conf writes it on the virtual server.
	var def service.Forward
	if len(s.Backends) > 0 && !slices.ContainsFunc(s.Backends, func(b service.Backend) bool { return b.Forward != s.Backends[0].Forward }) {
		def = s.Backends[0].Forward
	}
	sy.Forward = forwardToYAML(def, service.Forward{})
	if s.VLAN != 0 {
		sy.VLAN = &yInt{v: s.VLAN}
	}
	if ss := s.SorryServer; ss != nil {
		sy.SorryServer = &sorryYAML{Address: yAddr{v: ss.Addr}, Port: ptr(ss.Port), Inhibit: ss.Inhibit, Forward: forwardToYAML(ss.Forward, def)}
	}
	for _, b := range s.Backends {
		by := backendYAML{
			Address: yAddr{v: b.Addr}, Port: ptr(b.Port), Weight: &yInt{v: b.Weight}, Forward: forwardToYAML(b.Forward, def),
			InhibitOnFailure: b.InhibitOnFailure, NotifyUp: b.NotifyUp, NotifyDown: b.NotifyDown, NotifyUser: b.NotifyUser,
		}
		for _, c := range b.Checks {
			by.Checks = append(by.Checks, checkToYAML(&c))
		}
		sy.Backends = append(sy.Backends, by)
	}
	return sy
}

// forwardToYAML writes f, or nothing when it is def, what the reader
// gives a server without its own.
func forwardToYAML(f, def service.Forward) *forwardYAML {
	if f == def {
		return nil
	}
	fy := &forwardYAML{Method: yMethod{v: f.Method}, Csum: f.Csum}
	if f.Method == service.Tunnel {
		fy.Encap = &yEncap{v: f.Encap}
	}
	if f.Port != 0 {
		fy.Port = &yInt{v: int(f.Port)}
	}
	return fy
}

func checkToYAML(c *service.Check) checkYAML {
	cy := checkYAML{
		Type: yCheckKind{v: c.Kind.String()}, ConnectPort: c.ConnectPort, BindPort: c.BindPort, BindIf: c.BindIf,
		Retry: ptr(c.Retry), DelayBeforeRetry: dur(c.DelayBeforeRetry), Rise: c.Rise, Warmup: dur(c.Warmup),
		DelayLoop: dur(c.DelayLoop), VirtualHost: c.VirtualHost, EnableSNI: c.EnableSNI,
		MiscPath: c.MiscPath, MiscTimeout: optDur(c.MiscTimeout), MiscDynamic: c.MiscDynamic, User: c.User,
		Alpha: c.Alpha, LogAllFailures: c.LogAllFailures,
	}
	if c.Kind != service.CheckMisc {
		cy.ConnectTimeout = dur(c.ConnectTimeout)
	}
	if c.ConnectIP.IsValid() {
		cy.ConnectIP = &yAddr{v: c.ConnectIP}
	}
	if c.BindTo.IsValid() {
		cy.BindTo = &yAddr{v: c.BindTo}
	}
	for _, u := range c.URLs {
		uy := urlYAML{Path: yString{v: u.Path}, Digest: u.Digest, VirtualHost: u.VirtualHost}
		for _, r := range u.StatusCodes {
			uy.StatusCodes = append(uy.StatusCodes, r.String())
		}
		cy.URLs = append(cy.URLs, uy)
	}
	return cy
}

func instanceToYAML(in *service.VRRPInstance) instanceYAML {
	iy := instanceYAML{
		Name: yString{v: in.Name}, State: in.State, Interface: in.Interface, VirtualRouterID: in.VirtualRouterID,
		Priority: &yInt{v: in.Priority}, AdvertInt: dur(in.AdvertInt), Version: ptr(in.Version), Preempt: ptr(in.Preempt),
		PreemptDelay: optDur(in.PreemptDelay), GARPMasterDelay: dur(in.GARPMasterDelay),
		GARPMasterRepeat: ptr(in.GARPMasterRepeat), GARPMasterRefresh: optDur(in.GARPMasterRefresh),
		GARPLowerRepeat: in.GARPLowerPrioRepeat, GARPLowerDelay: optDur(in.GARPLowerPrioDelay), GARPRefreshRepeat: in.GARPMasterRefreshRepeat, SkipCheckAdvAddr: in.SkipCheckAdvAddr,
		DontTrackPrimary: in.DontTrackPrimary,
		CheckUnicastSrc:  in.CheckUnicastSrc, LowerPrioNoAdvert: in.LowerPrioNoAdvert, HigherPrioAdvert: in.HigherPrioSendAdvert,
		Notify: notifyToYAML(in.Notify),
	}
	if in.Auth != nil {
		iy.Auth = &authYAML{Type: in.Auth.Type, Pass: in.Auth.Pass}
	}
	for _, v := range in.VirtualIPs {
		vy := virtualIPYAML{Prefix: yPrefix{v: v.Prefix}, Dev: v.Dev, Label: v.Label}
		if v.PreferredLft != nil {
			vy.PreferredLft = &yDuration{v: *v.PreferredLft}
		}
		iy.VirtualIPs = append(iy.VirtualIPs, vy)
	}
	if in.SourceIP.IsValid() {
		iy.SourceIP = &yAddr{v: in.SourceIP}
	}
	for _, p := range in.UnicastPeers {
		iy.UnicastPeers = append(iy.UnicastPeers, yAddr{v: p})
	}
	for _, t := range in.TrackScripts {
		iy.TrackScripts = append(iy.TrackScripts, trackYAML{Name: yString{v: t.Name}, Weight: ptr(t.Weight)})
	}
	for _, t := range in.TrackInterfaces {
		iy.TrackInterfaces = append(iy.TrackInterfaces, trackYAML{Name: yString{v: t.Name}, Weight: ptr(t.Weight)})
	}
	return iy
}

func notifyToYAML(n service.Notify) *notifyYAML {
	if n == (service.Notify{}) {
		return nil
	}
	ny := notifyYAML(n)
	return &ny
}

func bgpToYAML(b *service.BGP) *bgpYAML {
	out := &bgpYAML{
		LocalAS: yUint32{v: b.LocalAS}, RouterID: yAddr{v: b.RouterID}, ListenPort: b.ListenPort, MED: b.MED,
		HoldTime: dur(b.HoldTime), KeepaliveTime: dur(b.KeepaliveTime), ConnectRetry: dur(b.ConnectRetry),
		GracefulLeave: dur(b.GracefulLeave), Communities: communitiesToYAML(b.Communities),
	}
	for _, p := range b.Peers {
		py := bgpPeerYAML{Address: yAddr{v: p.Address}, AS: p.AS, Port: p.Port, Password: p.Password, Multihop: p.Multihop}
		if p.LocalAddress.IsValid() {
			py.LocalAddress = &yAddr{v: p.LocalAddress}
		}
		for _, f := range p.Families {
			py.Families = append(py.Families, string(f))
		}
		out.Peers = append(out.Peers, py)
	}
	for _, v := range b.VIPs {
		out.VIPs = append(out.VIPs, bgpVIPYAML{VIP: yAddr{v: v.VIP}, Communities: communitiesToYAML(v.Communities), MED: v.MED})
	}
	return out
}

func communitiesToYAML(cs []service.Community) []yCommunity {
	if cs == nil {
		return nil
	}
	out := make([]yCommunity, len(cs))
	for i, c := range cs {
		out[i] = yCommunity{v: c}
	}
	return out
}
