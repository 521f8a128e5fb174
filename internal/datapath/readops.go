package datapath

// FlowTableCapacity is how many flows the flow table holds at most: both
// families' tables and probations.
func (d *Datapath) FlowTableCapacity() uint32 {
	var n uint32
	for _, t := range d.flowTables() {
		n += t.m.MaxEntries()
	}
	return n
}
