package daemon

import (
	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/status"
)

// State is the running state for `xlb list` (see status.Build).
func (d *Daemon) State() (api.State, error) {
	d.mu.Lock()
	cfg, vs := d.cfg, d.vrrp
	d.mu.Unlock()
	conns, entries := d.sweeper.Counts()
	st, err := status.Build(cfg, d.bal.State(), d.dp, conns, entries)
	if err != nil {
		return api.State{}, err
	}
	st.Config = d.opts.ConfigPath
	d.ovr.Mark(&st)
	st.VRRP = vs.State()
	d.mu.Lock()
	// Clients arrive on the first interface only: without it nothing
	// does; without another, its real servers miss their frames, as
	// they would with a link down.
	if first := d.opts.Interfaces[0]; d.iface[first].Gone() {
		st.Detached = "interface " + first + " is gone"
	}
	d.mu.Unlock()
	st.BGP = d.bgp.State()
	return st, nil
}
