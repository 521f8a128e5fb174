package ha

import (
	"reflect"
	"time"

	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// Changed reports whether the VRRP settings of two configurations differ:
// instances, sync groups and vrrp_scripts, compared without the lines
// they were read from, so that a reload that only moves them (an edit
// above them, a comment) leaves the running instances alone.
func Changed(old, new *service.Config) bool {
	return !reflect.DeepEqual(vrrpPart(old), vrrpPart(new))
}

func vrrpPart(cfg *service.Config) any {
	return service.WithoutLines([]any{cfg.VRRP, cfg.SyncGroups, cfg.Scripts})
}

func isIPv6(ic service.VRRPInstance) bool {
	return len(ic.VirtualIPs) > 0 && ic.VirtualIPs[0].Prefix.Addr().Is6()
}

// instanceConfig is what the state machine of a vrrp_instance needs of
// it; Validate has checked its ranges.
func instanceConfig(in service.VRRPInstance) vrrp.Config {
	c := vrrp.Config{
		Name: in.Name, VRID: uint8(in.VirtualRouterID), Priority: in.Priority,
		AdvertInt: in.AdvertInt, Version: in.Version,
		Preempt: in.Preempt, PreemptDelay: in.PreemptDelay,
		UnicastPeers: in.UnicastPeers, CheckUnicastSrc: in.CheckUnicastSrc,
		SkipCheckAdvAddr:     in.SkipCheckAdvAddr,
		LowerPrioNoAdvert:    in.LowerPrioNoAdvert,
		HigherPrioSendAdvert: in.HigherPrioSendAdvert,
		LowerPrioReannounce:  in.GARPLowerPrioRepeat > 0,
	}
	if in.Auth != nil && in.Auth.Type == "PASS" {
		c.PassAuth, c.Password = true, in.Auth.Pass
	}
	for _, v := range in.VirtualIPs {
		c.Addrs = append(c.Addrs, v.Prefix.Addr())
	}
	for _, t := range in.TrackInterfaces {
		c.TrackInterfaces = append(c.TrackInterfaces, vrrp.Track{Name: t.Name, Weight: t.Weight})
	}
	for _, t := range in.TrackScripts {
		c.TrackScripts = append(c.TrackScripts, vrrp.Track{Name: t.Name, Weight: t.Weight})
	}
	return c
}

// announceConfig is what the announcer of a vrrp_instance holds and how
// it announces it.
func announceConfig(in service.VRRPInstance) announce.Config {
	c := announce.Config{
		Name: "vrrp_instance " + in.Name, Interface: in.Interface,
		Repeat: in.GARPMasterRepeat, Delay: in.GARPMasterDelay, Refresh: in.GARPMasterRefresh,
		RefreshRepeat: in.GARPMasterRefreshRepeat,
	}
	for _, v := range in.VirtualIPs {
		vip := announce.VIP{Prefix: v.Prefix, Dev: v.Dev, Label: v.Label, PreferredLft: v.PreferredLft}
		if v.Deprecated() {
			vip.PreferredLft = new(time.Duration)
		}
		c.VIPs = append(c.VIPs, vip)
	}
	return c
}
