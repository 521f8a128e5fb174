package datapath

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// ServiceInfo is a service as the data path holds it.
type ServiceInfo struct {
	Key     ServiceKey
	Service Service
	Table   []uint32
}

// Services lists every service with its live Maglev table.
func (d *Datapath) Services() ([]ServiceInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.services()
	if err != nil {
		return nil, err
	}
	out := make([]ServiceInfo, 0, len(cur))
	for k, m := range cur {
		table, err := d.table(m.Table)
		if err != nil {
			return nil, fmt.Errorf("datapath: service %s: %w", k.key(), err)
		}
		var vlan uint32
		if err := d.objs.SvcVlan.Lookup(m.Id, &vlan); err != nil {
			return nil, fmt.Errorf("datapath: service %s: vlan: %w", k.key(), err)
		}
		out = append(out, ServiceInfo{
			Key:     k.key(),
			Service: Service{ID: m.Id, HashSource: m.Flags&svcFlagHashSrc != 0, VLAN: uint16(vlan)},
			Table:   table,
		})
	}
	return out, nil
}

// Backends returns the MAC of every present backend by id.
func (d *Datapath) Backends() (map[uint32][6]byte, error) {
	// One batch read of the whole array: entry by entry is a syscall per
	// id, 65536 of them.
	keys := make([]uint32, MaxBackends)
	vals := make([]lbBackend, MaxBackends)
	var cursor ebpf.MapBatchCursor
	n, err := d.objs.Backends.BatchLookup(&cursor, keys, vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("datapath: read backends: %w", err)
	}
	out := map[uint32][6]byte{}
	for i := range n {
		if vals[i].Flags&backendPresent != 0 {
			out[keys[i]] = vals[i].Mac
		}
	}
	return out, nil
}

// Stats are traffic counters summed over CPUs.
type Stats struct {
	Packets, Bytes, Flows uint64
}

func (d *Datapath) stats(idx uint32) (Stats, error) {
	var per []lbLbStats
	if err := d.objs.Stats.Lookup(idx, &per); err != nil {
		return Stats{}, err
	}
	var s Stats
	for _, p := range per {
		s.Packets += p.Packets
		s.Bytes += p.Bytes
		s.Flows += p.Flows
	}
	return s, nil
}

// ServiceStats returns the counters of service id.
func (d *Datapath) ServiceStats(id uint32) (Stats, error) {
	if id >= MaxServices {
		return Stats{}, fmt.Errorf("datapath: service id %d out of range", id)
	}
	s, err := d.stats(id)
	if err != nil {
		return s, fmt.Errorf("datapath: stats of service id %d: %w", id, err)
	}
	return s, nil
}

// BackendStats returns the counters of backend id.
func (d *Datapath) BackendStats(id uint32) (Stats, error) {
	if id >= MaxBackends {
		return Stats{}, fmt.Errorf("datapath: backend id %d out of range", id)
	}
	s, err := d.stats(MaxServices + id)
	if err != nil {
		return s, fmt.Errorf("datapath: stats of backend id %d: %w", id, err)
	}
	return s, nil
}

// Counter names the reason counters of the program (enum xlb_counter).
type Counter uint32

// The program's counters: the values of enum xlb_counter, under Go names.
const (
	CounterPassNotIP     = Counter(lbXlbCounterXLB_CNT_PASS_NOT_IP)     // ARP, LLDP, anything not IPv4/IPv6
	CounterPassMalformed = Counter(lbXlbCounterXLB_CNT_PASS_MALFORMED)  // truncated or inconsistent headers
	CounterPassFragment  = Counter(lbXlbCounterXLB_CNT_PASS_FRAGMENT)   // IPv6 extension header the program does not follow
	CounterPassNotL4     = Counter(lbXlbCounterXLB_CNT_PASS_NOT_L4)     // ICMP, VRRP, other IP protocols
	CounterPassNotVIP    = Counter(lbXlbCounterXLB_CNT_PASS_NOT_VIP)    // no service for this address/port
	CounterPassNoBackend = Counter(lbXlbCounterXLB_CNT_PASS_NO_BACKEND) // service has no table or an empty slot
	CounterFlowNew       = Counter(lbXlbCounterXLB_CNT_FLOW_NEW)        // new flows: probation inserts and entries rewritten
	CounterFlowRehash    = Counter(lbXlbCounterXLB_CNT_FLOW_REHASH)     // known flow whose backend was removed or is another service's
	CounterPassOtherHost = Counter(lbXlbCounterXLB_CNT_PASS_OTHER_HOST) // VIP traffic sent to another host's MAC
	CounterFlowExpired   = Counter(lbXlbCounterXLB_CNT_FLOW_EXPIRED)    // entry idle past its timeout, scheduled afresh
	CounterFlowPromoted  = Counter(lbXlbCounterXLB_CNT_FLOW_PROMOTED)   // flow moved from probation to the flow table
	CounterPromoteFull   = Counter(lbXlbCounterXLB_CNT_PROMOTE_FULL)    // flow that lasted kept in probation: the flow table is full
	// CounterPassICMPNoFlow: an ICMP error to a VIP quoting a flow that
	// is unknown, expired or without its backend, or not from that VIP.
	CounterPassICMPNoFlow = Counter(lbXlbCounterXLB_CNT_PASS_ICMP_NO_FLOW)
	// CounterPassFragNoFirst: a later fragment of a VIP datagram whose
	// first fragment was not seen (or whose record was evicted).
	CounterPassFragNoFirst = Counter(lbXlbCounterXLB_CNT_PASS_FRAG_NO_FIRST)
	// CounterFlowICMPRelayed: an ICMP error sent to the real server of
	// the flow it quotes.
	CounterFlowICMPRelayed = Counter(lbXlbCounterXLB_CNT_FLOW_ICMP_RELAYED)
	CounterPassTunNoRoute  = Counter(lbXlbCounterXLB_CNT_TUN_NO_ROUTE)     // tunnel backend with no route
	CounterPassTunNoNeigh  = Counter(lbXlbCounterXLB_CNT_TUN_NO_NEIGH)     // tunnel backend whose next hop's MAC is not resolved yet
	CounterPassTunTooBig   = Counter(lbXlbCounterXLB_CNT_TUN_TOO_BIG)      // encapsulated packet above the route's MTU
	CounterPassTunFwdOff   = Counter(lbXlbCounterXLB_CNT_TUN_FWD_OFF)      // forwarding off on the interface: the FIB does not route
	CounterTunTooBigSent   = Counter(lbXlbCounterXLB_CNT_TUN_TOO_BIG_SENT) // too big once encapsulated: answered with an ICMP error
	CounterPassVLAN        = Counter(lbXlbCounterXLB_CNT_PASS_VLAN)        // VIP traffic on a VLAN its service is not limited to
	CounterPassNoTxPort    = Counter(lbXlbCounterXLB_CNT_PASS_NO_TX_PORT)  // the backend's interface is not one the program serves
	counterMax             = Counter(lbXlbCounterXLB_CNT_MAX)
)

// counterNames is keyed, not positional, so that reordering enum
// xlb_counter cannot put a name on the wrong counter.
var counterNames = [counterMax]string{
	CounterPassNotIP:     "pass_not_ip",
	CounterPassMalformed: "pass_malformed",
	CounterPassFragment:  "pass_fragment",
	CounterPassNotL4:     "pass_not_l4",
	CounterPassNotVIP:    "pass_not_vip",
	CounterPassNoBackend: "pass_no_backend",
	CounterFlowNew:       "flow_new",
	CounterFlowRehash:    "flow_rehash",
	CounterPassOtherHost: "pass_other_host",
	CounterFlowExpired:   "flow_expired",
	CounterFlowPromoted:  "flow_promoted",
	CounterPromoteFull:   "promote_full",
	// Prefixed like the others so that metrics file them as a pass
	// reason and a flow event.
	CounterPassICMPNoFlow:  "pass_icmp_no_flow",
	CounterPassFragNoFirst: "pass_fragment_no_first",
	CounterFlowICMPRelayed: "flow_icmp_relayed",
	CounterPassTunNoRoute:  "pass_tun_no_route",
	CounterPassTunNoNeigh:  "pass_tun_no_neigh",
	CounterPassTunTooBig:   "pass_tun_too_big",
	CounterPassTunFwdOff:   "pass_tun_forwarding_off",
	CounterTunTooBigSent:   "flow_too_big_answered",
	CounterPassVLAN:        "pass_vlan",
	CounterPassNoTxPort:    "pass_no_tx_port",
}

func (c Counter) String() string {
	if c < counterMax {
		return counterNames[c]
	}
	return fmt.Sprintf("counter%d", uint32(c))
}

// Counters returns every reason counter summed over CPUs.
func (d *Datapath) Counters() (map[Counter]uint64, error) {
	out := map[Counter]uint64{}
	for c := range counterMax {
		var per []uint64
		if err := d.objs.Counters.Lookup(uint32(c), &per); err != nil {
			return nil, fmt.Errorf("datapath: counter %s: %w", c, err)
		}
		for _, v := range per {
			out[c] += v
		}
	}
	return out, nil
}

// FlowState is the input-only TCP state of a flow (IPVS's view in direct
// routing, where replies bypass the balancer).
type FlowState uint8

// Flow states: the values of enum xlb_flow_state.
const (
	FlowSYN   = FlowState(lbXlbFlowStateXLB_FLOW_SYN)   // first packet was a SYN
	FlowEst   = FlowState(lbXlbFlowStateXLB_FLOW_EST)   // a packet without SYN/FIN/RST was seen
	FlowFIN   = FlowState(lbXlbFlowStateXLB_FLOW_FIN)   // FIN seen
	FlowClose = FlowState(lbXlbFlowStateXLB_FLOW_CLOSE) // RST seen
	FlowUDP   = FlowState(lbXlbFlowStateXLB_FLOW_UDP)   // UDP has no state
)

func (s FlowState) String() string {
	switch s {
	case FlowSYN:
		return "SYN"
	case FlowEst:
		return "ESTABLISHED"
	case FlowFIN:
		return "FIN"
	case FlowClose:
		return "CLOSE"
	case FlowUDP:
		return "UDP"
	}
	return fmt.Sprintf("state%d", uint8(s))
}

// FlowEntry is one entry of the flow table.
type FlowEntry struct {
	Flow    Flow
	Backend uint32
	// Service is the id of the service that placed the flow: the entry
	// is followed only while its backend is that service's.
	Service uint32
	State   FlowState
	// Idle is how long ago the flow last sent a packet, to within one
	// atime unit (the program stamps flows coarsely, see bpf/lb_consts.h).
	Idle time.Duration
	// Probation is set while the flow has not lasted long enough to be
	// moved to the flow table proper, where no flood can evict it.
	Probation bool
}

// clock reads the program's clock, jiffies in atime units as it stamps
// flows, by running xlb_now.
func (d *Datapath) clock() (uint32, error) {
	ret, err := d.objs.XlbNow.Run(&ebpf.RunOptions{Data: make([]byte, 14)})
	if err != nil {
		return 0, fmt.Errorf("datapath: read the program's clock: %w", err)
	}
	return ret, nil
}

// idleClock turns flow atimes into ages: it reads the program's clock now
// and knows the tick rate.
type idleClock struct {
	now uint32 // jiffies >> atimeShift
	hz  float64
}

func (d *Datapath) idleClock() (idleClock, error) {
	d.hzOnce.Do(func() { d.hz, d.hzErr = tickRate() })
	if d.hzErr != nil {
		return idleClock{}, d.hzErr
	}
	now, err := d.clock()
	if err != nil {
		return idleClock{}, err
	}
	return idleClock{now: now, hz: d.hz}, nil
}

// idle is how long ago atime was, to within one atime unit: the
// difference survives the wrap of the stamp, and a stamp a packet wrote
// after the clock was read is no time ago.
func (c idleClock) idle(atime uint32) time.Duration {
	units := max(int32(c.now-atime), 0)
	return time.Duration(float64(units) * unitDuration(c.hz).Seconds() * float64(time.Second))
}
