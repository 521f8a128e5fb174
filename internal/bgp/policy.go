// Package bgp is xlb's BGP node: it announces the VIPs to routers over BGP
// while this balancer can serve them, so that routers spread flows over
// every balancer that can by ECMP, and it withdraws them gracefully
// (RFC 8326's GRACEFUL_SHUTDOWN first) when the balancer leaves.
//
// The policy (Decide) is a pure function of what the daemon knows; the
// Node applies its decisions to a Speaker, GoBGP in production and a fake
// in tests. The daemon drives a Node as it drives the VRRP node: Prepare
// it, Start it once the program is attached, tell it what is Served after
// every apply, and Stop it.
package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/xlb-project/xlb/internal/service"
)

// Facts is what the daemon knows of its ability to serve.
type Facts struct {
	// Attached: the XDP program is attached and forwarding.
	Attached bool
	// Stalled: the daemon's event loop has not turned for
	// LivenessTimeout (see Node.Alive): whatever it serves is no longer
	// kept up to date, and no health check result reaches the tables.
	Stalled bool
	// Leaving: the balancer is going away or was drained (`xlb
	// drain-bgp`): every VIP leaves gracefully.
	Leaving bool
	// Services is every configured service and its state.
	Services []ServiceFacts
}

// ServiceFacts is what a VIP's announcement depends on of one service.
type ServiceFacts struct {
	Key service.ServiceKey
	// Live: some real server is up.
	Live bool
	// Quorum: the service holds its quorum (with none set, it holds it
	// while a real server is up).
	Quorum bool
	// Sorry: the service has a sorry_server, which takes new connections
	// while the quorum is lost.
	Sorry bool
}

// Action is what a Decision does with a VIP.
type Action int

// Actions, from best to worst for the VIP.
const (
	// Announce: this balancer serves the VIP.
	Announce Action = iota
	// AnnounceSorry: only a sorry server serves some service of the VIP;
	// the VIP is announced with SorryMEDPenalty added to its MED, so
	// that routers prefer balancers whose real servers serve it and use
	// this one only if none do.
	AnnounceSorry
	// Leave: withdraw gracefully: announce with GRACEFUL_SHUTDOWN and
	// the lowest preference, keep forwarding, withdraw after the
	// graceful_leave time.
	Leave
	// Withdraw at once: the balancer cannot serve the VIP, so any flow
	// the router still sends here is a flow lost.
	Withdraw
)

// String names the action as `xlb bgp` shows the VIP's state.
func (a Action) String() string {
	switch a {
	case Announce, AnnounceSorry:
		return "announced"
	case Leave:
		return "leaving"
	}
	return "withdrawn"
}

// SorryMEDPenalty is added to the MED of a VIP that only a sorry server
// serves.
const SorryMEDPenalty = 1000

// Decision is what to do with one VIP, and why.
type Decision struct {
	VIP    netip.Addr
	Action Action
	Reason string
}

// Decide is the announcement policy. A VIP is announced while this
// balancer can serve every service on it: the program is attached, the
// daemon is healthy (its event loop turns), and
// each service has a live real server and holds its quorum; a service
// whose quorum is lost but whose sorry_server serves keeps the VIP
// announced at a worse MED. A VIP that a service cannot serve is
// withdrawn at once, so the routers send its flows to the balancers that
// can. A leaving balancer, and a VIP in announced that no service has any
// more (a reload removed it), leaves gracefully. announced is the set of
// VIPs announced now; the decisions are sorted by VIP.
func Decide(f Facts, announced []netip.Addr) []Decision {
	byVIP := map[netip.Addr][]ServiceFacts{}
	for _, s := range f.Services {
		byVIP[s.Key.VIP] = append(byVIP[s.Key.VIP], s)
	}
	var out []Decision
	for vip, svcs := range byVIP {
		out = append(out, decide(f, vip, svcs))
	}
	for _, vip := range announced {
		if _, ok := byVIP[vip]; !ok {
			out = append(out, Decision{VIP: vip, Action: Leave, Reason: "leaving: no service has this VIP any more"})
		}
	}
	slices.SortFunc(out, func(a, b Decision) int { return a.VIP.Compare(b.VIP) })
	return out
}

func decide(f Facts, vip netip.Addr, svcs []ServiceFacts) Decision {
	d := Decision{VIP: vip, Action: Announce}
	switch {
	case f.Leaving:
		d.Action, d.Reason = Leave, "leaving: the balancer is stopping or drained"
		return d
	case !f.Attached:
		d.Action, d.Reason = Withdraw, "withdrawn: the XDP program is not attached"
		return d
	case f.Stalled:
		d.Action, d.Reason = Withdraw, fmt.Sprintf("withdrawn: the daemon's event loop has not turned for %s", LivenessTimeout)
		return d
	}
	slices.SortFunc(svcs, func(a, b ServiceFacts) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	var sorry, dead []string
	for _, s := range svcs {
		switch {
		case s.Quorum && s.Live:
		case s.Sorry:
			sorry = append(sorry, s.Key.String())
		case !s.Live:
			dead = append(dead, s.Key.String()+" has no live real server")
		default:
			dead = append(dead, s.Key.String()+" lost its quorum")
		}
	}
	switch {
	case len(dead) > 0:
		d.Action, d.Reason = Withdraw, "withdrawn: "+strings.Join(dead, ", ")
	case len(sorry) > 0:
		d.Action = AnnounceSorry
		d.Reason = fmt.Sprintf("announced at MED +%d: only the sorry server serves %s", SorryMEDPenalty, strings.Join(sorry, ", "))
	default:
		d.Reason = fmt.Sprintf("serving: %d service(s) with live real servers", len(svcs))
	}
	return d
}
