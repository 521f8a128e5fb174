// Package reconcile decides what the balancer serves: it turns the
// configuration, the health of every real server, the quorum of every
// service and the resolved MACs into the balancer's desired state, with
// keepalived's rules for failed servers, sorry servers and quorums. It
// holds no I/O: the daemon feeds it and runs the scripts its quorum
// changes call for.
package reconcile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/service"
)

// Balancer is what a Reconciler applies its desired state to
// (*balancer.Balancer; tests give it a fake).
type Balancer interface {
	Apply([]balancer.Service) error
}

// Reconciler applies desired states and keeps what each one decided of the
// services' quorums, which the next one starts from (hysteresis). It is
// not safe for concurrent use: the daemon serialises applies.
type Reconciler struct {
	bal    Balancer
	quorum quorums
	digest string
	ovr    Overrides
	// link is the interface each real server is on (SetLinks).
	link func(netip.Addr) uint32
}

// SetLinks makes every later Apply send each real server's frames out of
// the interface link names for its address (0: the one they came in on),
// for a data path attached to several interfaces.
func (r *Reconciler) SetLinks(link func(netip.Addr) uint32) { r.link = link }

// Overrides are the operator's runtime weights and drains
// (*override.Store).
type Overrides interface {
	// Weight is the weight be serves svc with instead of w.
	Weight(svc service.ServiceKey, be netip.AddrPort, w int) int
}

// SetOverrides makes every later Apply serve the live real servers at the
// weights o gives. Overrides change only the served weight: quorums count
// the configured weights, as keepalived's do when ipvsadm edits a weight
// behind its back, so draining a server for maintenance does not by
// itself hand the service to its sorry server.
func (r *Reconciler) SetOverrides(o Overrides) { r.ovr = o }

// New returns a Reconciler that applies to bal.
func New(bal Balancer) *Reconciler {
	return &Reconciler{bal: bal}
}

// QuorumChange is a service whose quorum an Apply lost or regained.
type QuorumChange struct {
	Service service.Service
	Held    bool
}

// Links is how the balancer reaches each real server, as resolved so
// far: a server missing here is left out of the tables until it is.
type Links struct {
	// MACs are the direct-routing servers' link-layer addresses.
	MACs map[netip.Addr]net.HardwareAddr
	// Sources are the balancer's addresses toward the tunnel servers:
	// their packets' outer source.
	Sources map[netip.Addr]netip.Addr
}

// Apply makes the balancer serve cfg as health h and the resolved links
// say (h nil: every server up), and returns the services whose quorum
// changed. A failed Apply changes nothing, the quorums included.
func (r *Reconciler) Apply(cfg *service.Config, links Links, h Health) ([]QuorumChange, error) {
	if h == nil {
		h = alwaysUp{}
	}
	q, changed := nextQuorums(cfg, h, r.quorum)
	want := desired(cfg, links, h, q, r.ovr)
	if r.link != nil {
		for i := range want {
			for j, be := range want[i].Backends {
				if be.Tunnel == nil { // a tunnel leaves where the FIB says
					want[i].Backends[j].Ifindex = r.link(be.Addr)
				}
			}
		}
	}
	if err := r.bal.Apply(want); err != nil {
		return nil, err
	}
	r.quorum = q
	r.digest = digest(want)
	out := make([]QuorumChange, len(changed))
	for i, s := range changed {
		out[i] = QuorumChange{Service: s, Held: q[s.Key()]}
	}
	return out, nil
}

// HoldsQuorum reports whether the last Apply found the service holding its
// quorum.
func (r *Reconciler) HoldsQuorum(key service.ServiceKey) bool {
	return r.quorum[key]
}

// Digest identifies the Maglev tables the last Apply served: a hash of
// everything they are built from (each service's key, hashing and table
// size, and its backends' addresses, weights and whether they are in the
// table). Balancers that share VIPs by ECMP must show the same digest, or
// a flow the router moves between them may change real server.
func (r *Reconciler) Digest() string {
	return r.digest
}

func digest(svcs []balancer.Service) string {
	h := sha256.New()
	svcs = slices.Clone(svcs)
	slices.SortFunc(svcs, func(a, b balancer.Service) int {
		return cmp.Or(a.Key.Addr.Compare(b.Key.Addr), cmp.Compare(a.Key.Port, b.Key.Port), cmp.Compare(a.Key.Proto, b.Key.Proto))
	})
	for _, s := range svcs {
		fmt.Fprintf(h, "%s %d %d %t %d\n", s.Key.Addr, s.Key.Port, s.Key.Proto, s.HashSource, s.TableSize)
		for _, b := range s.Backends {
			fmt.Fprintf(h, " %s %d %d %t\n", b.Addr, b.Port, b.Weight, b.MAC != nil)
			if t := b.Tunnel; t != nil {
				fmt.Fprintf(h, "  tun %d %d %t\n", t.Encap, t.Port, t.Csum)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// protoNumbers maps the model's protocols to IP protocol numbers.
var protoNumbers = map[service.Proto]uint8{service.TCP: 6, service.UDP: 17}

// DatapathKey is a model service key as the data path keys it.
func DatapathKey(k service.ServiceKey) datapath.ServiceKey {
	return datapath.ServiceKey{Addr: k.VIP, Port: k.Port, Proto: protoNumbers[k.Proto]}
}

// DatapathTimeouts are the flow lifetimes the configuration asks for, with
// IPVS's default for each it leaves unset.
func DatapathTimeouts(t service.Timeouts) datapath.Timeouts {
	out := datapath.DefaultTimeouts
	for _, f := range []struct {
		set time.Duration
		to  *time.Duration
	}{{t.TCP, &out.TCP}, {t.TCPFin, &out.Fin}, {t.UDP, &out.UDP}, {t.SynRecv, &out.SynRecv}, {t.Close, &out.Close}} {
		if f.set != 0 {
			*f.to = f.set
		}
	}
	return out
}

// Health is what a Reconciler needs of the health checker.
type Health interface {
	Up(svc service.ServiceKey, be netip.AddrPort) bool
	DynamicWeight(svc service.ServiceKey, be netip.AddrPort) (int, bool)
}

// alwaysUp is the health of a daemon without checks.
type alwaysUp struct{}

func (alwaysUp) Up(service.ServiceKey, netip.AddrPort) bool { return true }
func (alwaysUp) DynamicWeight(service.ServiceKey, netip.AddrPort) (int, bool) {
	return 0, false
}

// desired computes what the balancer should serve, with keepalived's
// semantics for failed real servers: a down backend with
// inhibit_on_failure stays at weight 0 (its flows drain), one without is
// removed (its flows are re-hashed). A service that has lost its quorum
// (q; see nextQuorums) hands new flows to its sorry server, if there is
// one, and its live backends leave as failed ones do. When no backend is
// up and there is no sorry server, every backend stays present at weight
// 0, so the balancer keeps serving the last table rather than turning the
// VIP away. A sorry server with sorry_server_inhibit stays at weight 0
// while the real servers serve, so that the connections it took drain
// rather than move when they come back.
func desired(cfg *service.Config, links Links, h Health, q quorums, ovr Overrides) []balancer.Service {
	out := make([]balancer.Service, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		bs := balancer.Service{
			Key:        DatapathKey(s.Key()),
			HashSource: hashSource(s),
			VLAN:       uint16(s.VLAN),
		}
		anyUp := AnyUp(s, h)
		sorry := s.SorryServer != nil && len(s.Backends) > 0 && !q[s.Key()]
		for _, be := range s.Backends {
			w := effectiveWeight(s, be, h)
			if ovr != nil {
				w = max(ovr.Weight(s.Key(), be.AddrPort(), w), 0)
			}
			if sorry || !h.Up(s.Key(), be.AddrPort()) {
				if !be.InhibitOnFailure && (anyUp || s.SorryServer != nil) {
					continue
				}
				w = 0
			}
			bs.Backends = append(bs.Backends, links.backend(be.Addr, be.Port, uint32(w), be.Forward))
		}
		if ss := s.SorryServer; ss != nil && len(s.Backends) > 0 && (sorry || ss.Inhibit) {
			w := uint32(0)
			if sorry {
				w = 1
			}
			bs.Backends = append(bs.Backends, links.backend(ss.Addr, ss.Port, w, ss.Forward))
		}
		out = append(out, bs)
	}
	return out
}

// backend is a real server as the balancer serves it: by its MAC, or by
// tunnel from its source; without either it is unresolved.
func (l Links) backend(addr netip.Addr, port uint16, w uint32, f service.Forward) balancer.Backend {
	b := balancer.Backend{Addr: addr, Port: port, Weight: w}
	if f.Method != service.Tunnel {
		b.MAC = l.MACs[addr]
		return b
	}
	if src, ok := l.Sources[addr]; ok {
		b.Tunnel = &datapath.Tunnel{Encap: datapath.EncapIPIP, Dst: addr, Src: src}
		if f.Encap == service.GUE {
			b.Tunnel.Encap, b.Tunnel.Port, b.Tunnel.Csum = datapath.EncapGUE, f.Port, f.Csum
		}
	}
	return b
}

// effectiveWeight is the weight be is served at while up: the last one a
// misc_dynamic check asked for, else the configured one.
func effectiveWeight(s service.Service, be service.Backend, h Health) int {
	if dw, ok := h.DynamicWeight(s.Key(), be.AddrPort()); ok {
		return max(dw, 0)
	}
	return max(be.Weight, 0)
}

// quorums is whether each service holds its quorum.
type quorums map[service.ServiceKey]bool

// nextQuorums applies keepalived's quorum rule to every service of cfg,
// from the states in prev (a service not in it starts holding its
// quorum): a service with Quorum set holds it while its live weight (the
// effective weights of its up backends) is at least Quorum - Hysteresis
// and above zero, and regains it at Quorum + Hysteresis; one without holds
// it while any backend is up. It returns the new states and the services
// whose state changed.
func nextQuorums(cfg *service.Config, h Health, prev quorums) (quorums, []service.Service) {
	next := make(quorums, len(cfg.Services))
	var changed []service.Service
	for _, s := range cfg.Services {
		was, ok := prev[s.Key()]
		if !ok {
			was = true
		}
		held := AnyUp(s, h)
		if s.Quorum > 0 {
			live := 0
			for _, be := range s.Backends {
				if h.Up(s.Key(), be.AddrPort()) {
					live += effectiveWeight(s, be, h)
				}
			}
			if was {
				held = live > 0 && live >= s.Quorum-s.Hysteresis
			} else {
				held = live > 0 && live >= s.Quorum+s.Hysteresis
			}
		}
		next[s.Key()] = held
		if held != was {
			changed = append(changed, s)
		}
	}
	return next, changed
}

// AnyUp reports whether some backend of s is up.
func AnyUp(s service.Service, h Health) bool {
	return slices.ContainsFunc(s.Backends, func(be service.Backend) bool { return h.Up(s.Key(), be.AddrPort()) })
}

// hashSource reports whether a service hashes on the client address only:
// IPVS sh and mh, or keepalived persistence (every connection of a client
// to one real server).
func hashSource(s service.Service) bool {
	if s.Persistence > 0 {
		return true
	}
	src, _, err := service.SchedulerPlan(s.Scheduler)
	return err == nil && src
}

// Capacity checks cfg against what the data path holds: services (each
// takes a service id) and real servers (each of each service, the sorry
// server too, takes a backend id). It returns a warning when a reload
// that replaced everything would not fit, and an error, at the place of
// the first that does not, when cfg alone does not: a reload gives the
// new ids out before it releases the old ones.
func Capacity(cfg *service.Config) ([]service.Warning, error) {
	maxServices, maxBackends := datapath.MaxServices-1, datapath.MaxBackends-1
	var errs []error
	var warns []service.Warning
	if n := len(cfg.Services); n > maxServices {
		s := cfg.Services[maxServices]
		errs = append(errs, &service.Error{Pos: s.Source, Msg: fmt.Sprintf("service %s: %d services, the data path holds %d", s.Key(), n, maxServices)})
	} else if n > maxServices/2 {
		warns = append(warns, service.Warning{Pos: cfg.Services[0].Source, Msg: fmt.Sprintf("%d services: a reload that replaced them all would need %d service ids at once, the data path holds %d", n, 2*n, maxServices)})
	}
	n, over := 0, service.Pos{}
	for _, s := range cfg.Services {
		k := len(s.Backends)
		if s.SorryServer != nil {
			k++
		}
		if n+k > maxBackends && !over.IsValid() {
			over = s.Source
		}
		n += k
	}
	switch {
	case over.IsValid():
		errs = append(errs, &service.Error{Pos: over, Msg: fmt.Sprintf("%d real servers in all services, the data path holds %d", n, maxBackends)})
	case n > maxBackends/2:
		warns = append(warns, service.Warning{Pos: cfg.Services[0].Source, Msg: fmt.Sprintf("%d real servers: a reload that replaced them all would need %d backend ids at once, the data path holds %d", n, 2*n, maxBackends)})
	}
	return warns, errors.Join(errs...)
}
