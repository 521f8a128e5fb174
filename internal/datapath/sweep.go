package datapath

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// Conns are a backend's connections as IPVS counts them: active are
// ESTABLISHED, inactive every other live entry (SYN, FIN, CLOSE, UDP).
type Conns struct {
	Active, Inactive uint64
}

// SweepResult is what one pass of Sweep found and did.
type SweepResult struct {
	// Backends counts the live entries by backend id.
	Backends map[uint32]Conns
	// Live is the entries left, Probation those of them in probation.
	Live, Probation int
	// Expired is the entries deleted: idle past their timeout, so the
	// program no longer followed them.
	Expired int
	// Took is how long the pass took, pauses included.
	Took time.Duration
}

// Sweep walks the whole flow table once, in batches with pause between
// them, deletes every entry the program no longer follows (idle past its
// state's timeout), and counts the others by backend. The flow table
// proper never evicts: its entries leave only here (or when their tuple
// comes back and is scheduled afresh), so that table stays full of what
// still matters. A batch cursor is a bucket index, so entries added and
// removed meanwhile neither restart nor abort the walk; an entry a packet
// refreshes between the read and the delete is checked again first.
func (d *Datapath) Sweep(pause time.Duration) (SweepResult, error) {
	start := time.Now()
	res := SweepResult{Backends: map[uint32]Conns{}}
	hz, err := tickRate()
	if err != nil {
		return res, err
	}
	d.mu.Lock()
	limits := d.timeouts.settings(hz).Timeout
	d.mu.Unlock()
	now, err := d.clock()
	if err != nil {
		return res, err
	}
	// Signed, as the program's age(): a packet may have stamped an entry
	// after the clock was read.
	dead := func(v lbFlow) bool { return int32(now-v.Atime) > int32(limits[v.State&(uint8(len(limits))-1)]) }
	for _, t := range d.flowTables() {
		var expired []any
		batches := 0
		err := t.walkKeys(func(key any, v lbFlow) bool {
			if dead(v) {
				expired = append(expired, key)
				return true
			}
			res.Live++
			if t.probation {
				res.Probation++
			}
			c := res.Backends[v.Backend]
			if FlowState(v.State) == FlowEst {
				c.Active++
			} else {
				c.Inactive++
			}
			res.Backends[v.Backend] = c
			return true
		}, func() {
			if batches++; pause > 0 {
				time.Sleep(pause)
			}
		})
		if err != nil {
			return res, err
		}
		for _, key := range expired {
			// Read again: a packet may have come since.
			var v lbFlow
			if err := t.m.Lookup(key, &v); err != nil {
				continue
			}
			if !dead(v) {
				continue
			}
			if err := t.m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return res, fmt.Errorf("datapath: sweep: %w", err)
			}
			res.Expired++
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// walkKeys calls fn for every entry of t, with its key as the map holds
// it (lbFlow4Key or lbFlowKey), until fn returns false; and between after
// each full batch. It reads the map in batches: a batch cursor is a
// bucket index, so entries added and removed meanwhile do not restart or
// abort the walk (an iterator whose last key was deleted starts over, and
// gives up after a few times).
func (t flowTable) walkKeys(fn func(key any, v lbFlow) bool, between func()) error {
	if t.ip4 {
		return walkBatches[lbFlow4Key](t.m, fn, between)
	}
	return walkBatches[lbFlowKey](t.m, fn, between)
}

func walkBatches[K any](m *ebpf.Map, fn func(key any, v lbFlow) bool, between func()) error {
	keys := make([]K, flowBatch)
	vals := make([]lbFlow, flowBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if !fn(keys[i], vals[i]) {
				return nil
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("datapath: read flows: %w", err)
		}
		between()
	}
}
