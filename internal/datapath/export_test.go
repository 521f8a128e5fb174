package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// LookupFlow returns the flow table's entry for f. Production code only
// walks the whole table (Flows); tests look up the flow they just sent.
func (d *Datapath) LookupFlow(f Flow) (FlowEntry, bool, error) {
	var v lbFlow
	err := d.objs.Flows.Lookup(f.bpf(), &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return FlowEntry{}, false, nil
	}
	if err != nil {
		return FlowEntry{}, false, fmt.Errorf("datapath: flow lookup: %w", err)
	}
	clock, err := d.idleClock()
	if err != nil {
		return FlowEntry{}, false, err
	}
	e := FlowEntry{Flow: f, Backend: v.Backend, Service: uint32(v.Service), State: FlowState(v.State), Idle: clock.idle(v.Atime)}
	return e, true, nil
}

// bpf is f as the flows map keys it.
func (f Flow) bpf() lbFlowKey {
	fam := family(f.Dst)
	return lbFlowKey{
		Src: addrBytes(f.Src, fam), Dst: addrBytes(f.Dst, fam),
		Sport: htons(f.SrcPort), Dport: htons(f.DstPort),
		Proto: f.Proto, Family: fam,
	}
}
