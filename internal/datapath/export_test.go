package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// LookupFlow returns the flow table's entry for f. Production code only
// walks the whole table (Flows); tests look up the flow they just sent.
func (d *Datapath) LookupFlow(f Flow) (FlowEntry, bool, error) {
	clock, err := d.idleClock()
	if err != nil {
		return FlowEntry{}, false, err
	}
	for _, probation := range []bool{false, true} {
		var v lbFlow
		t, key := d.tableOf(f, probation)
		err := t.m.Lookup(key, &v)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return FlowEntry{}, false, fmt.Errorf("datapath: flow lookup: %w", err)
		}
		e := clock.entry(f, v)
		e.Probation = probation
		return e, true, nil
	}
	return FlowEntry{}, false, nil
}
