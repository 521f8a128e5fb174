package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// The flow table is one map per family (bpf/lb_maps.h): an IPv4 entry is
// keyed by the 16 bytes of struct flow4_key, an IPv6 one by the 40 of
// struct flow_key.

// flowMapNames are the flow table's maps, adopted (KeepFlows) or replaced
// together.
var flowMapNames = []string{lbMapFlows4, lbMapFlows6}

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
	m   *ebpf.Map
	ip4 bool
}

// flowTables are the maps of the flow table.
func (d *Datapath) flowTables() []flowTable {
	return []flowTable{{d.objs.Flows4, true}, {d.objs.Flows6, false}}
}

// tableOf is the table f is kept in, and its key there.
func (d *Datapath) tableOf(f Flow) (flowTable, any) {
	if family(f.Dst) == afInet {
		return flowTable{d.objs.Flows4, true}, f.bpf4()
	}
	return flowTable{d.objs.Flows6, false}, f.bpf6()
}

// flowBatch is how many entries one batch lookup reads.
const flowBatch = 4096

// walk calls fn for every entry of t until fn returns false, reading the
// map in batches: a batch cursor is a bucket index, so entries added and
// removed meanwhile do not restart or abort the walk (an iterator whose
// last key was deleted starts over, and gives up after a few times).
func (t flowTable) walk(fn func(Flow, lbFlow) bool) error {
	vals := make([]lbFlow, flowBatch)
	var cursor ebpf.MapBatchCursor
	var keys4 []lbFlow4Key
	var keys6 []lbFlowKey
	if t.ip4 {
		keys4 = make([]lbFlow4Key, flowBatch)
	} else {
		keys6 = make([]lbFlowKey, flowBatch)
	}
	for {
		var n int
		var err error
		if t.ip4 {
			n, err = t.m.BatchLookup(&cursor, keys4, vals, nil)
		} else {
			n, err = t.m.BatchLookup(&cursor, keys6, vals, nil)
		}
		for i := range n {
			var f Flow
			if t.ip4 {
				f = keys4[i].flow()
			} else {
				f = keys6[i].flow()
			}
			if !fn(f, vals[i]) {
				return nil
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("datapath: read flows: %w", err)
		}
	}
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
			stop = !fn(clock.entry(f, v))
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
