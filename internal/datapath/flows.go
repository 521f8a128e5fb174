package datapath

import (
	"net/netip"

	"github.com/cilium/ebpf"
)

// The flow table is segmented (bpf/lb_maps.h): new flows go into
// probation, an LRU a flood can churn, and move to the flow table proper,
// a hash that never evicts, once they have lasted. Each has one map per
// family: an IPv4 entry is keyed by the 16 bytes of struct flow4_key, an
// IPv6 one by the 40 of struct flow_key.

// flowMapNames are the flow table's maps, adopted (KeepFlows) or replaced
// together.
var flowMapNames = []string{lbMapFlows4, lbMapFlows6, lbMapProbation4, lbMapProbation6}

// probationSize is the size of each family's probation for a flow table
// of n: a quarter of it. A flood churns probation, so its size only sets
// how long a new flow may go without a packet before the flood evicts
// it; lasting flows leave it for the table.
func probationSize(n uint32) uint32 { return max(n/4, 64) }

// sizeFlowMaps sets the flow maps of spec for a table of n per family
// and a probation of p (probationSize(n) if zero).
func sizeFlowMaps(spec *ebpf.CollectionSpec, n, p uint32) {
	if p == 0 {
		p = probationSize(n)
	}
	spec.Maps[lbMapFlows4].MaxEntries = n
	spec.Maps[lbMapFlows6].MaxEntries = n
	spec.Maps[lbMapProbation4].MaxEntries = p
	spec.Maps[lbMapProbation6].MaxEntries = p
}

// bpf4 is f, an IPv4 flow, as flows4 keys it.
func (f Flow) bpf4() lbFlow4Key {
	return lbFlow4Key{
		Src: f.Src.Unmap().As4(), Dst: f.Dst.Unmap().As4(),
		Sport: htons(f.SrcPort), Dport: htons(f.DstPort), Proto: f.Proto,
	}
}

// bpf6 is f as flows6 keys it, and as the Maglev hash reads any flow.
func (f Flow) bpf6() lbFlowKey {
	fam := family(f.Dst)
	return lbFlowKey{
		Src: addrBytes(f.Src, fam), Dst: addrBytes(f.Dst, fam),
		Sport: htons(f.SrcPort), Dport: htons(f.DstPort),
		Proto: f.Proto, Family: fam,
	}
}

func (k lbFlow4Key) flow() Flow {
	return Flow{Src: netip.AddrFrom4(k.Src), Dst: netip.AddrFrom4(k.Dst), SrcPort: ntohs(k.Sport), DstPort: ntohs(k.Dport), Proto: k.Proto}
}

func (k lbFlowKey) flow() Flow {
	return Flow{
		Src: getAddr(k.Src, k.Family), Dst: getAddr(k.Dst, k.Family),
		SrcPort: ntohs(k.Sport), DstPort: ntohs(k.Dport), Proto: k.Proto,
	}
}

// flowTable is one map of the flow table.
type flowTable struct {
	m         *ebpf.Map
	ip4       bool
	probation bool
}

// flowTables are the maps of the flow table, the table proper first.
func (d *Datapath) flowTables() []flowTable {
	return []flowTable{
		{d.objs.Flows4, true, false}, {d.objs.Flows6, false, false},
		{d.objs.Probation4, true, true}, {d.objs.Probation6, false, true},
	}
}

// tableOf is the map f would be kept in, in probation or not, and its key
// there.
func (d *Datapath) tableOf(f Flow, probation bool) (flowTable, any) {
	if family(f.Dst) == afInet {
		if probation {
			return flowTable{d.objs.Probation4, true, true}, f.bpf4()
		}
		return flowTable{d.objs.Flows4, true, false}, f.bpf4()
	}
	if probation {
		return flowTable{d.objs.Probation6, false, true}, f.bpf6()
	}
	return flowTable{d.objs.Flows6, false, false}, f.bpf6()
}

// flowBatch is how many entries one batch lookup reads.
const flowBatch = 4096

// walk calls fn for every entry of t until fn returns false.
func (t flowTable) walk(fn func(Flow, lbFlow) bool) error {
	return t.walkKeys(func(key any, v lbFlow) bool {
		switch k := key.(type) {
		case lbFlow4Key:
			return fn(k.flow(), v)
		case lbFlowKey:
			return fn(k.flow(), v)
		}
		return false
	}, func() {})
}

// Flows calls fn for every entry of the flow table until fn returns false.
func (d *Datapath) Flows(fn func(FlowEntry) bool) error {
	clock, err := d.idleClock()
	if err != nil {
		return err
	}
	for _, t := range d.flowTables() {
		stop := false
		err := t.walk(func(f Flow, v lbFlow) bool {
			e := clock.entry(f, v)
			e.Probation = t.probation
			stop = !fn(e)
			return !stop
		})
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// entry is the FlowEntry of f's value v.
func (c idleClock) entry(f Flow, v lbFlow) FlowEntry {
	return FlowEntry{Flow: f, Backend: v.Backend, Service: uint32(v.Service), State: FlowState(v.State), Idle: c.idle(v.Atime)}
}
