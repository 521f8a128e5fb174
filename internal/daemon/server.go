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
	for _, name := range d.opts.Interfaces {
		if st.Detached == "" && d.iface[name].Gone() {
			st.Detached = "interface " + name + " is gone"
		}
	}
	d.mu.Unlock()
	st.BGP = d.bgp.State()
	return st, nil
}
