package datapath

// FlowTableCapacity is how many flows the flow table holds at most; when
// it is full the kernel evicts the least recently used flow.
func (d *Datapath) FlowTableCapacity() uint32 {
	return d.objs.Flows.MaxEntries()
}
