package daemon

import (
	"net"
	"net/netip"

	"github.com/xlb-project/xlb/internal/balancer"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/service"
)

// protoNumbers maps the model's protocols to IP protocol numbers.
var protoNumbers = map[service.Proto]uint8{service.TCP: 6, service.UDP: 17}

// dpKey is a model service key as the data path keys it.
func dpKey(k service.ServiceKey) datapath.ServiceKey {
	return datapath.ServiceKey{Addr: k.VIP, Port: k.Port, Proto: protoNumbers[k.Proto]}
}

// backendWeight is the weight of a backend as health makes it: a backend
// that is down is drained (inhibit_on_failure) or gone.
type backendWeight func(svc service.ServiceKey, be netip.AddrPort, configured uint32) (weight uint32, present bool)

// desired computes what the balancer should serve: every service of cfg
// with each backend's MAC (nil while unresolved) and effective weight.
func desired(cfg *service.Config, macs map[netip.Addr]net.HardwareAddr, weight backendWeight) []balancer.Service {
	out := make([]balancer.Service, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		bs := balancer.Service{
			Key:        dpKey(s.Key()),
			HashSource: hashSource(s),
		}
		for _, be := range s.Backends {
			w := uint32(max(be.Weight, 0))
			if weight != nil {
				var ok bool
				if w, ok = weight(s.Key(), be.AddrPort(), w); !ok {
					continue
				}
			}
			bs.Backends = append(bs.Backends, balancer.Backend{
				Addr:   be.Addr,
				Port:   be.Port,
				Weight: w,
				MAC:    macs[be.Addr],
			})
		}
		out = append(out, bs)
	}
	return out
}

// hashSource reports whether a service hashes on the client address only:
// IPVS sh, or keepalived persistence (every connection of a client to one
// real server).
func hashSource(s service.Service) bool {
	return s.Persistence > 0 || s.Scheduler == "sh"
}
