package datapath

import (
	"encoding/binary"
	"net/netip"
)

// This file is a reference model of xlb_xdp's forwarding decision, written
// from bpf/parse.h and bpf/lb.c rather than from the Go loader: it parses
// frames itself, keeps its own services, backends and flows, and shares
// only the hash (FlowHash, MaglevIndex in hash_test.go) with the rest, so
// that FuzzDatapath can hold the program to it byte for byte.

// modelKey is struct flow_key: addresses as they appear on the wire (IPv4
// in the first four bytes), ports in host order.
type modelKey struct {
	Src, Dst     [16]byte
	Sport, Dport uint16
	Proto        uint8
	Family       uint8 // 4 or 6
}

// flow is the key as the package's Flow type spells it, for the hash.
func (k modelKey) flow() Flow {
	addr := func(b [16]byte) netip.Addr {
		if k.Family == 4 {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16(b)
	}
	return Flow{Src: addr(k.Src), Dst: addr(k.Dst), SrcPort: k.Sport, DstPort: k.Dport, Proto: k.Proto}
}

// modelVIP is struct vip_key.
type modelVIP struct {
	Addr   [16]byte
	Port   uint16
	Proto  uint8
	Family uint8
}

func vipOf(k ServiceKey) modelVIP {
	v := modelVIP{Port: k.Port, Proto: k.Proto}
	if a := k.Addr.Unmap(); a.Is4() {
		b := a.As4()
		copy(v.Addr[:], b[:])
		v.Family = 4
	} else {
		v.Addr = a.As16()
		v.Family = 6
	}
	return v
}

type modelService struct {
	ID         uint32
	HashSource bool
	// VLAN is the one VLAN the service takes frames from; 0 any.
	VLAN uint16
	// Table is the Maglev table; nil when the service's slot holds none.
	Table []uint32
}

// modelFlow is struct flow. Idle is how many clock units before the frame
// the entry last saw a packet: what the program compares with the
// timeout of its state. The model does not tick: entries the frames write
// or follow are idle 0, and tests keep every timeout many units away from
// the idle times they set up, so the clock ticking during a run changes
// no decision.
type modelFlow struct {
	Backend uint32
	Service uint32
	State   FlowState
	Idle    uint32
	// Age is how many units before its last packet the flow saw its
	// first: what promotion out of probation asks of it.
	Age uint32
	// Probation: in probation, not yet in the flow table proper.
	Probation bool
}

// modelBackend is a present backend.
type modelBackend struct {
	MAC     macAddr
	Service uint32
	// Ifindex is the interface the backend is on: 0 or the ingress one
	// (fuzzIngress) sends back out, any other is one the test run's
	// program does not serve (tx_ports holds none).
	Ifindex uint32
}

// model is the state the program reads, and its forwarding decision.
type model struct {
	// srcMAC is the configured source MAC; zero keeps each frame's
	// destination MAC.
	srcMAC   macAddr
	services map[modelVIP]modelService
	backends map[uint32]modelBackend // present backends only
	flows    map[modelKey]modelFlow
	// timeouts and promote are struct xlb_settings', in clock units.
	timeouts [8]uint32
	promote  uint32
}

func newModel(srcMAC macAddr) *model {
	return &model{
		srcMAC:   srcMAC,
		services: map[modelVIP]modelService{},
		backends: map[uint32]modelBackend{},
		flows:    map[modelKey]modelFlow{},
	}
}

// expired is the program's test: idle longer than the state allows.
func (m *model) expired(f modelFlow) bool {
	return int32(f.Idle) > int32(m.timeouts[f.State&7])
}

// statKey names one entry of the stats map.
type statKey struct {
	Backend bool
	ID      uint32
}

// modelResult is what one frame does.
type modelResult struct {
	Verdict  uint32
	Frame    []byte
	Counters map[Counter]uint64
	Stats    map[statKey]Stats
}

// parse reasons other than success are the counters they increment;
// success is no counter at all.
const parseOK Counter = counterMax

// modelParse reads a frame as parse.h does: one optional 802.1Q/802.1ad
// tag, IPv4 with any IHL whose tot_len fits the frame, IPv6 whose
// payload_len fits the frame, then, for a destination the VIP filter may
// hold (filter nil: any), the TCP or UDP header, bounded by the end of the
// frame and by what the IP header says follows it. A frame the filter
// rules out is CounterPassNotVIP, whatever its transport header.
func modelParse(b []byte, filter *vipFilter) (modelKey, uint8, Counter) {
	var k modelKey
	if len(b) < 14 {
		return k, 0, CounterPassMalformed
	}
	etype := binary.BigEndian.Uint16(b[12:])
	off := 14
	if etype == tpid8021Q || etype == tpidQinQ {
		if len(b) < off+4 {
			return k, 0, CounterPassMalformed
		}
		etype = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	var l4, l4len int
	switch etype {
	case etIPv4:
		if len(b) < off+20 {
			return k, 0, CounterPassMalformed
		}
		ver, ihl := b[off]>>4, int(b[off]&0x0f)
		if ver != 4 || ihl < 5 {
			return k, 0, CounterPassMalformed
		}
		tot := int(binary.BigEndian.Uint16(b[off+2:]))
		if tot < ihl*4 || off+tot > len(b) {
			return k, 0, CounterPassMalformed
		}
		if binary.BigEndian.Uint16(b[off+6:])&(ipMF|0x1fff) != 0 {
			return k, 0, CounterPassFragment
		}
		k.Family = 4
		k.Proto = b[off+9]
		copy(k.Src[:4], b[off+12:])
		copy(k.Dst[:4], b[off+16:])
		if k.Proto != ipProtoTCP && k.Proto != ipProtoUDP {
			return k, 0, CounterPassNotL4
		}
		// The L4 header must fit in what tot_len says follows the IP
		// header, not merely in the frame (TestL4HeaderBeyondIPLength).
		l4, l4len = off+ihl*4, tot-ihl*4
	case etIPv6:
		if len(b) < off+40 {
			return k, 0, CounterPassMalformed
		}
		if b[off]>>4 != 6 {
			return k, 0, CounterPassMalformed
		}
		if off+40+int(binary.BigEndian.Uint16(b[off+4:])) > len(b) {
			return k, 0, CounterPassMalformed
		}
		k.Family = 6
		k.Proto = b[off+6]
		copy(k.Src[:], b[off+8:off+24])
		copy(k.Dst[:], b[off+24:off+40])
		switch k.Proto {
		case ipProtoTCP, ipProtoUDP:
		case ipProtoHopOpts, ipProtoRouting, ipProtoFragment, ipProtoDstOpts:
			return k, 0, CounterPassFragment
		default:
			return k, 0, CounterPassNotL4
		}
		l4, l4len = off+40, int(binary.BigEndian.Uint16(b[off+4:]))
	default:
		return k, 0, CounterPassNotIP
	}
	if filter != nil {
		if bit := filterBit(k.Dst); filter[bit/64]>>(bit%64)&1 == 0 {
			return k, 0, CounterPassNotVIP
		}
	}
	hlen := 8
	if k.Proto == ipProtoTCP {
		hlen = 20
	}
	if len(b) < l4+hlen || l4len < hlen {
		return k, 0, CounterPassMalformed
	}
	k.Sport = binary.BigEndian.Uint16(b[l4:])
	k.Dport = binary.BigEndian.Uint16(b[l4+2:])
	var flags uint8
	if k.Proto == ipProtoTCP {
		flags = b[l4+13]
	}
	return k, flags, parseOK
}

// filter is the VIP filter Apply keeps for the model's services.
func (m *model) filter() *vipFilter {
	var f vipFilter
	for v := range m.services {
		f.add(v.Addr)
	}
	return &f
}

// modelNextState is IPVS's input-only TCP view: RST closes, FIN finishes,
// a SYN does not move a flow that has a state, and nothing but a new
// connection leaves FIN or CLOSE.
func modelNextState(proto, flags uint8, cur FlowState) FlowState {
	switch {
	case proto != ipProtoTCP:
		return FlowUDP
	case flags&thRST != 0:
		return FlowClose
	case flags&thFIN != 0:
		return FlowFIN
	case flags&thSYN != 0:
		if cur != 0 {
			return cur
		}
		return FlowSYN
	case cur == FlowFIN || cur == FlowClose:
		return cur
	}
	return FlowEst
}

// pick is the Maglev choice for k, 0 for none.
func (m *model) pick(svc modelService, k modelKey) uint32 {
	if len(svc.Table) == 0 {
		return 0
	}
	return svc.Table[MaglevIndex(FlowHash(k.flow(), svc.HashSource), uint32(len(svc.Table)))]
}

// process runs one frame through the model and updates its flows.
func (m *model) process(frame []byte) modelResult {
	res := modelResult{
		Verdict:  verdictPass,
		Frame:    append([]byte{}, frame...),
		Counters: map[Counter]uint64{},
		Stats:    map[statKey]Stats{},
	}
	k, flags, why := modelParse(frame, m.filter())
	if why != parseOK {
		res.Counters[why]++
		return res
	}
	if m.srcMAC != (macAddr{}) && macAddr(frame[0:6]) != m.srcMAC {
		res.Counters[CounterPassOtherHost]++
		return res
	}

	// A known flow goes to its backend without a services lookup, while
	// the backend is present and still its service's.
	var id, svcID uint32
	fresh := uint64(0)
	f, known := m.flows[k]
	// A SYN without ACK on a finished flow is a new connection.
	reuse := flags&(thSYN|thACK) == thSYN && (f.State == FlowFIN || f.State == FlowClose)
	switch {
	case known && m.expired(f):
		// IPVS would have dropped it: scheduled afresh.
		res.Counters[CounterFlowExpired]++
	case known && !reuse:
		if be, present := m.backends[f.Backend]; present && be.Service == f.Service {
			if !m.vlanOK(f.Service, frame) {
				res.Counters[CounterPassVLAN]++
				return res
			}
			id, svcID = f.Backend, f.Service
			st := modelNextState(k.Proto, flags, f.State)
			nf := modelFlow{Backend: id, Service: f.Service, State: st, Age: f.Idle + f.Age, Probation: f.Probation}
			// A flow in probation that lasted moves to the flow table,
			// tried on the first packet of a clock unit.
			if f.Probation && (st == FlowEst || st == FlowUDP) && f.Idle > 0 && f.Idle+f.Age >= m.promote {
				nf.Probation = false
				res.Counters[CounterFlowPromoted]++
			}
			m.flows[k] = nf
		} else {
			res.Counters[CounterFlowRehash]++
		}
	}
	if id == 0 {
		vip := modelVIP{Addr: k.Dst, Port: k.Dport, Proto: k.Proto, Family: k.Family}
		svc, ok := m.services[vip]
		if !ok {
			vip.Port = 0
			if svc, ok = m.services[vip]; !ok {
				res.Counters[CounterPassNotVIP]++
				return res
			}
		}
		if !m.vlanOK(svc.ID, frame) {
			res.Counters[CounterPassVLAN]++
			return res
		}
		id, svcID = m.pick(svc, k), svc.ID
		if be, present := m.backends[id]; id == 0 || !present || be.Service != svc.ID {
			res.Counters[CounterPassNoBackend]++
			return res
		}
		// Rewritten where it is, or new in probation.
		m.flows[k] = modelFlow{Backend: id, Service: svc.ID, State: modelNextState(k.Proto, flags, 0), Probation: !known || f.Probation}
		res.Counters[CounterFlowNew]++
		fresh = 1
	}

	if ifx := m.backends[id].Ifindex; ifx != 0 && ifx != fuzzIngress {
		// The flow is placed, and followed, as for any backend.
		res.Counters[CounterPassNoTxPort]++
		return res
	}
	if m.srcMAC != (macAddr{}) {
		copy(res.Frame[6:12], m.srcMAC[:])
	} else {
		copy(res.Frame[6:12], frame[0:6])
	}
	be := m.backends[id].MAC
	copy(res.Frame[0:6], be[:])
	res.Verdict = verdictTX
	st := Stats{Packets: 1, Bytes: uint64(len(frame)), Flows: fresh}
	res.Stats[statKey{ID: svcID}] = st
	res.Stats[statKey{Backend: true, ID: id}] = st
	return res
}

// vlanOK reports whether the service with id svcID takes a frame on the
// frame's VLAN: the 12 low bits of the one tag parsed, 0 untagged.
func (m *model) vlanOK(svcID uint32, frame []byte) bool {
	var want uint16
	for _, s := range m.services {
		if s.ID == svcID {
			want = s.VLAN
		}
	}
	var vid uint16
	if et := binary.BigEndian.Uint16(frame[12:]); et == tpid8021Q || et == tpidQinQ {
		vid = binary.BigEndian.Uint16(frame[14:]) & 0x0fff
	}
	return want == 0 || want == vid
}
