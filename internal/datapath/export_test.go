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
	t, key := d.tableOf(f)
	err := t.m.Lookup(key, &v)
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
	return clock.entry(f, v), true, nil
}
