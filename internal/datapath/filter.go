package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// The VIP filter (vip_filter in bpf/lb_maps.h) lets the program pass a
// frame for no VIP after one array load: one bit per VIP address, at a
// multiplicative hash of the address folded to a word. A set bit only
// means "maybe": the services lookup decides.
const (
	filterBits  = uint32(lbXlbVipFilterXLB_VIP_FILTER_BITS)
	filterWords = int(lbXlbVipFilterXLB_VIP_FILTER_WORDS)
	filterMul   = uint32(lbXlbVipFilterXLB_VIP_FILTER_MUL)
)

// filterWords of the program's filter.
type vipFilter [filterWords]uint64

// filterBit is the bit of addr (16 bytes, IPv4 in the first four and the
// rest zero, as the program holds it) in the filter: the program's
// may_be_vip, which folds the address's words as it reads them from
// memory, little-endian.
func filterBit(addr [16]byte) uint32 {
	var x uint32
	for i := 0; i < 16; i += 4 {
		x ^= uint32(addr[i]) | uint32(addr[i+1])<<8 | uint32(addr[i+2])<<16 | uint32(addr[i+3])<<24
	}
	return (x * filterMul) >> (32 - filterBits)
}

func (f *vipFilter) add(addr [16]byte) {
	b := filterBit(addr)
	f[b/64] |= 1 << (b % 64)
}

// filterOf is the filter of a set of services.
func filterOf(keys ...map[lbVipKey]lbVipMeta) *vipFilter {
	var f vipFilter
	for _, m := range keys {
		for k := range m {
			f.add(k.Addr)
		}
	}
	return &f
}

// readFilter reads the program's filter.
func (d *Datapath) readFilter() (*vipFilter, error) {
	keys := make([]uint32, filterWords)
	var f vipFilter
	var cursor ebpf.MapBatchCursor
	n, err := d.objs.VipFilter.BatchLookup(&cursor, keys, f[:], nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("datapath: read the VIP filter: %w", err)
	}
	if n != filterWords {
		return nil, fmt.Errorf("datapath: read the VIP filter: %d of %d words", n, filterWords)
	}
	return &f, nil
}

// writeFilter writes the words of want that differ from have.
func (d *Datapath) writeFilter(have, want *vipFilter) error {
	var keys []uint32
	var vals []uint64
	for i := range want {
		if have[i] != want[i] {
			keys = append(keys, uint32(i))
			vals = append(vals, want[i])
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := d.objs.VipFilter.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("datapath: write the VIP filter: %w", err)
	}
	return nil
}

// syncFilter makes the filter that of the services in the map: Load calls
// it for services adopted from a run whose filter went with its pins, or
// that had none.
func (d *Datapath) syncFilter() error {
	cur, err := d.services()
	if err != nil {
		return err
	}
	have, err := d.readFilter()
	if err != nil {
		return err
	}
	return d.writeFilter(have, filterOf(cur))
}
