package datapath

import (
	"bytes"
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
	// Tunnel, unless zero, makes it a tunnel backend, routed by the
	// fuzz namespace's FIB (see modelFIB).
	Tunnel Tunnel
	// Ifindex is the interface the backend is on: 0 or the ingress one
	// (fuzzIngress) sends back out, any other is one the test run's
	// program does not serve (tx_ports holds none).
	Ifindex uint32
}

// modelMTU is the MTU of every route of the tunnel tests' namespace: its
// veths'.
const modelMTU = 1500

// model is the state the program reads, and its forwarding decision.
type model struct {
	// srcMAC is the configured source MAC; zero keeps each frame's
	// destination MAC.
	srcMAC   macAddr
	services map[modelVIP]modelService
	backends map[uint32]modelBackend // present backends only
	flows    map[modelKey]modelFlow
	// frags are the first fragments' records, never evicted: the tests
	// stay far below the table's size.
	frags map[modelFragKey]modelFragRec
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
		frags:    map[modelFragKey]modelFragRec{},
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
// success is no counter at all. parseFragLater is a later fragment the
// VIP filter lets through: its ports are in the model's fragment records.
const (
	parseOK        Counter = counterMax
	parseFragLater Counter = counterMax + 1
)

// Where a frame stands in a fragmented datagram (enum xlb_frag).
const (
	fragNone = iota
	fragFirst
	fragLater
)

// modelFragKey is struct frag_key.
type modelFragKey struct {
	Src, Dst [16]byte
	ID       uint32
	Proto    uint8
	Family   uint8
}

// modelFragRec is struct frag_ports: what a first fragment recorded.
type modelFragRec struct {
	Sport, Dport uint16
	Flags        uint8
}

// parsed is what modelParseFrame found in a frame.
type parsed struct {
	key   modelKey
	flags uint8
	// icmp: an ICMP error; key is the flow it quotes, reversed.
	icmp   bool
	frag   int
	fragID uint32
}

func (p parsed) fragKey() modelFragKey {
	return modelFragKey{Src: p.key.Src, Dst: p.key.Dst, ID: p.fragID, Proto: p.key.Proto, Family: p.key.Family}
}

// modelParse is modelParseFrame's key, flags and reason.
func modelParse(b []byte, filter *vipFilter) (modelKey, uint8, Counter) {
	p, why := modelParseFrame(b, filter)
	return p.key, p.flags, why
}

// modelParseFrame reads a frame as parse.h and relay.h do: one optional
// 802.1Q/802.1ad tag, IPv4 with any IHL whose tot_len fits the frame, IPv6
// whose payload_len fits the frame (and a fragment header right after its
// fixed header), then, for a destination the VIP filter may hold (filter
// nil: any), the TCP or UDP header, bounded by the end of the frame and by
// what the IP header says follows it, or the flow an ICMP error quotes. A
// TCP, UDP or ICMP frame the filter rules out is CounterPassNotVIP,
// whatever its transport header.
func modelParseFrame(b []byte, filter *vipFilter) (parsed, Counter) {
	var p parsed
	k := &p.key
	if len(b) < 14 {
		return p, CounterPassMalformed
	}
	etype := binary.BigEndian.Uint16(b[12:])
	off := 14
	if etype == tpid8021Q || etype == tpidQinQ {
		if len(b) < off+4 {
			return p, CounterPassMalformed
		}
		etype = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	var l4, l4len int
	icmp := false
	switch etype {
	case etIPv4:
		if len(b) < off+20 {
			return p, CounterPassMalformed
		}
		ver, ihl := b[off]>>4, int(b[off]&0x0f)
		if ver != 4 || ihl < 5 {
			return p, CounterPassMalformed
		}
		tot := int(binary.BigEndian.Uint16(b[off+2:]))
		if tot < ihl*4 || off+tot > len(b) {
			return p, CounterPassMalformed
		}
		k.Family = 4
		k.Proto = b[off+9]
		copy(k.Src[:4], b[off+12:])
		copy(k.Dst[:4], b[off+16:])
		// The L4 header must fit in what tot_len says follows the IP
		// header, not merely in the frame (TestL4HeaderBeyondIPLength).
		l4, l4len = off+ihl*4, tot-ihl*4
		fo := binary.BigEndian.Uint16(b[off+6:])
		switch {
		case fo&(ipMF|0x1fff) != 0:
			if k.Proto != ipProtoTCP && k.Proto != ipProtoUDP {
				return p, CounterPassNotL4
			}
			p.fragID = uint32(binary.BigEndian.Uint16(b[off+4:]))
			p.frag = fragFirst
			if fo&0x1fff != 0 {
				p.frag = fragLater
			}
		case k.Proto == ipProtoICMP:
			icmp = true
		case k.Proto != ipProtoTCP && k.Proto != ipProtoUDP:
			return p, CounterPassNotL4
		}
	case etIPv6:
		if len(b) < off+40 {
			return p, CounterPassMalformed
		}
		if b[off]>>4 != 6 {
			return p, CounterPassMalformed
		}
		plen := int(binary.BigEndian.Uint16(b[off+4:]))
		if off+40+plen > len(b) {
			return p, CounterPassMalformed
		}
		k.Family = 6
		k.Proto = b[off+6]
		copy(k.Src[:], b[off+8:off+24])
		copy(k.Dst[:], b[off+24:off+40])
		l4, l4len = off+40, plen
		switch k.Proto {
		case ipProtoTCP, ipProtoUDP:
		case ipProtoICMPv6:
			icmp = true
		case ipProtoFragment:
			if len(b) < off+48 || plen < 8 {
				return p, CounterPassMalformed
			}
			k.Proto = b[off+40]
			if k.Proto != ipProtoTCP && k.Proto != ipProtoUDP {
				return p, CounterPassFragment
			}
			fo := binary.BigEndian.Uint16(b[off+42:])
			id := binary.BigEndian.Uint32(b[off+44:])
			switch {
			case fo&0xfff8 != 0:
				p.frag, p.fragID = fragLater, id
			case fo&1 != 0:
				p.frag, p.fragID = fragFirst, id
			}
			l4, l4len = off+48, plen-8
		case ipProtoHopOpts, ipProtoRouting, ipProtoDstOpts:
			return p, CounterPassFragment
		default:
			return p, CounterPassNotL4
		}
	default:
		return p, CounterPassNotIP
	}
	vip := true
	if filter != nil {
		bit := filterBit(k.Dst)
		vip = filter[bit/64]>>(bit%64)&1 != 0
	}
	switch {
	case !vip:
		return p, CounterPassNotVIP
	case icmp:
		return modelQuote(b, l4, l4len, p)
	case p.frag == fragLater:
		return p, parseFragLater
	}
	hlen := 8
	if k.Proto == ipProtoTCP {
		hlen = 20
	}
	if len(b) < l4+hlen || l4len < hlen {
		return p, CounterPassMalformed
	}
	k.Sport = binary.BigEndian.Uint16(b[l4:])
	k.Dport = binary.BigEndian.Uint16(b[l4+2:])
	if k.Proto == ipProtoTCP {
		p.flags = b[l4+13]
	}
	return p, parseOK
}

// modelQuote reads the ICMP message at l4 as relay.h does: an error
// (ICMP destination unreachable, source quench, time exceeded; ICMPv6
// types 1 to 4) quoting a TCP or UDP packet from the address it was sent
// to, of which the ports must be there. p's key becomes the quoted
// packet's, reversed: the client's flow.
func modelQuote(b []byte, l4, l4len int, p parsed) (parsed, Counter) {
	k := &p.key
	if len(b) < l4+8 || l4len < 8 {
		return p, CounterPassMalformed
	}
	typ, in := b[l4], l4+8
	var src, dst []byte
	var proto uint8
	qp := 0
	if k.Family == 4 {
		if typ != icmpDestUnreach && typ != icmpSourceQuench && typ != icmpTimeExceeded {
			return p, CounterPassNotL4
		}
		if len(b) < in+20 {
			return p, CounterPassMalformed
		}
		ver, ihl := b[in]>>4, int(b[in]&0x0f)
		if ver != 4 || ihl < 5 {
			return p, CounterPassMalformed
		}
		proto = b[in+9]
		if proto != ipProtoTCP && proto != ipProtoUDP || binary.BigEndian.Uint16(b[in+6:])&0x1fff != 0 {
			return p, CounterPassNotL4
		}
		qp = in + ihl*4
		if len(b) < qp+4 || l4len < 8+ihl*4+4 {
			return p, CounterPassMalformed
		}
		src, dst = b[in+12:in+16], b[in+16:in+20]
	} else {
		if typ < icmp6DestUnreach || typ > icmp6ParamProb {
			return p, CounterPassNotL4
		}
		qp = in + 40
		if len(b) < qp+4 || l4len < 8+40+4 {
			return p, CounterPassMalformed
		}
		if b[in]>>4 != 6 {
			return p, CounterPassMalformed
		}
		proto = b[in+6]
		if proto != ipProtoTCP && proto != ipProtoUDP {
			return p, CounterPassNotL4
		}
		src, dst = b[in+8:in+24], b[in+24:in+40]
	}
	if !bytes.Equal(src, k.Dst[:len(src)]) {
		return p, CounterPassICMPNoFlow
	}
	copy(k.Src[:], dst)
	k.Sport = binary.BigEndian.Uint16(b[qp+2:])
	k.Dport = binary.BigEndian.Uint16(b[qp:])
	k.Proto = proto
	p.icmp = true
	return p, parseOK
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
	p, why := modelParseFrame(frame, m.filter())
	if why == parseFragLater {
		// A later fragment takes its first one's ports and flags.
		rec, ok := m.frags[p.fragKey()]
		if !ok {
			why = CounterPassFragNoFirst
		} else {
			p.key.Sport, p.key.Dport, p.flags = rec.Sport, rec.Dport, rec.Flags
			why = parseOK
		}
	}
	if why != parseOK {
		res.Counters[why]++
		return res
	}
	k, flags := p.key, p.flags
	if m.srcMAC != (macAddr{}) && macAddr(frame[0:6]) != m.srcMAC {
		res.Counters[CounterPassOtherHost]++
		return res
	}
	if p.frag == fragFirst {
		m.frags[p.fragKey()] = modelFragRec{Sport: k.Sport, Dport: k.Dport, Flags: flags}
	}
	if p.icmp {
		// An ICMP error goes where its flow goes and changes nothing.
		f, known := m.flows[k]
		be, present := m.backends[f.Backend]
		if !known || m.expired(f) || !present || be.Service != f.Service {
			res.Counters[CounterPassICMPNoFlow]++
			return res
		}
		res.Counters[CounterFlowICMPRelayed]++
		return m.forward(res, frame, k, f.Backend, f.Service, 0)
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

	return m.forward(res, frame, k, id, svcID, fresh)
}

// forward is the program's tail: the frame goes to backend id with new
// MACs, counted for the service and the backend.
func (m *model) forward(res modelResult, frame []byte, k modelKey, id, svcID uint32, fresh uint64) modelResult {
	if m.backends[id].Tunnel != (Tunnel{}) {
		return m.tunnel(res, frame, k, id, svcID, fresh)
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

// tunnel is the program's tail for a tunnel backend, with the FIB of the
// tunnel tests' namespace: every real server through gw on lbIf, whose
// MTU is modelMTU. The packet goes out encapsulated (encap, built from
// the RFCs), or, too big once encapsulated, is answered with the ICMP
// error a router would send (tooBigReply), or passed.
func (m *model) tunnel(res modelResult, frame []byte, k modelKey, id, svcID uint32, fresh uint64) modelResult {
	t := m.backends[id].Tunnel
	if (k.Family == afInet) != t.Dst.Is4() {
		res.Counters[CounterPassTunNoRoute]++
		return res
	}
	ip := frame[l2Len(frame):]
	olen, inner := 20, 0
	if t.Dst.Is4() {
		inner = int(binary.BigEndian.Uint16(ip[2:]))
	} else {
		olen, inner = 40, 40+int(binary.BigEndian.Uint16(ip[4:]))
	}
	if t.Encap == EncapGUE {
		olen += 12
	}
	if olen+inner > modelMTU {
		if !answersTooBig(ip) {
			res.Counters[CounterPassTunTooBig]++
			return res
		}
		room := uint32(modelMTU - olen)
		if t.Dst.Is6() && room < 1280 {
			room = 1280
		}
		res.Counters[CounterTunTooBigSent]++
		res.Frame, res.Verdict = tooBigReply(frame, room), verdictTX
		return res
	}
	h := spreadHash(k.flow())
	res.Frame, res.Verdict = encap(frame, t, macGW, macLBIf, gueSport(h), h&0xfffff), verdictTX
	st := Stats{Packets: 1, Bytes: uint64(len(frame)), Flows: fresh}
	res.Stats[statKey{ID: svcID}] = st
	res.Stats[statKey{Backend: true, ID: id}] = st
	return res
}

// answersTooBig reports whether an IP packet too big for a tunnel gets an
// ICMP error rather than the kernel: TCP or UDP, not a fragment, and for
// IPv4 with DF and no options.
func answersTooBig(ip []byte) bool {
	if ip[0]>>4 == 4 {
		return ip[0]&0xf == 5 && binary.BigEndian.Uint16(ip[6:])&ipDF != 0 && (ip[9] == ipProtoTCP || ip[9] == ipProtoUDP)
	}
	return ip[6] == ipProtoTCP || ip[6] == ipProtoUDP
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
