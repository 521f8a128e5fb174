// Package api is xlb's runtime API: the JSON documents the daemon serves on
// its unix socket, a client for them, and the ipvsadm-style views that
// `xlb list` prints.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/xlb/xlb.sock"

// Paths of the API.
const (
	PathState  = "/v1/state"
	PathReload = "/v1/reload"
	PathStop   = "/v1/stop"
	// PathBGPDrain takes every VIP out of BGP gracefully (POST) or puts
	// them back (DELETE).
	PathBGPDrain = "/v1/bgp/drain"
)

// State is the running state as `xlb list` shows it.
type State struct {
	// Taken is when the counters were read; two States give rates.
	Taken    time.Time `json:"taken"`
	Config   string    `json:"config"`
	Services []Service `json:"services"`
	// FlowEntries is how many entries the flow table holds, expired
	// ones included (its occupancy).
	FlowEntries uint64 `json:"flow_entries"`
	// VRRP is every vrrp_instance as it runs, in configuration order.
	VRRP []VRRPInstance `json:"vrrp,omitempty"`
	// Detached, when set, says why no packet reaches the services listed:
	// the interface is gone, say.
	Detached string `json:"detached,omitempty"`
	// BGP is the BGP speaker, when a bgp section configures one.
	BGP *BGP `json:"bgp,omitempty"`
	// Counters are the data path's reason counters by name (why packets
	// were passed to the kernel, flow-table events), summed over CPUs.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// VRRPInstance is a vrrp_instance as it runs.
type VRRPInstance struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	VRID      int    `json:"vrid"`
	// State is keepalived's name for it: MASTER, BACKUP, FAULT, ...
	State string `json:"state"`
	// Priority is the effective priority, tracked scripts and interfaces
	// applied; BasePriority the configured one.
	Priority     int      `json:"priority"`
	BasePriority int      `json:"base_priority"`
	VIPs         []string `json:"vips"`
	// Advertisements sent, received, and received but dropped (bad
	// checksum, TTL, authentication, address list, ...).
	Sent     uint64 `json:"adverts_sent"`
	Received uint64 `json:"adverts_received"`
	Dropped  uint64 `json:"adverts_dropped"`
}

// Service is a virtual service.
type Service struct {
	Proto       string `json:"proto"` // "TCP" or "UDP"
	Addr        string `json:"addr"`
	Port        uint16 `json:"port"`
	Scheduler   string `json:"scheduler"`
	Persistence uint32 `json:"persistence,omitempty"` // seconds
	// VLAN is the 802.1Q VLAN the service is limited to; 0 any.
	VLAN      uint16 `json:"vlan,omitempty"`
	Installed bool   `json:"installed"`
	// ActiveConn and InActConn are the sums of the backends'.
	ActiveConn uint64    `json:"active_conn"`
	InActConn  uint64    `json:"inact_conn"`
	Stats      Stats     `json:"stats"`
	Backends   []Backend `json:"backends"`
}

// Backend is a real server of a service.
type Backend struct {
	Addr string `json:"addr"`
	Port uint16 `json:"port"`
	// Weight is the weight the data path uses now (0 while drained).
	Weight uint32 `json:"weight"`
	// ConfigWeight is the weight the configuration gives.
	ConfigWeight uint32 `json:"config_weight"`
	MAC          string `json:"mac,omitempty"`
	// Unresolved: no MAC is known, so the backend takes no traffic.
	Unresolved bool `json:"unresolved,omitempty"`
	// Sorry marks the sorry_server, listed only while it serves.
	Sorry bool `json:"sorry,omitempty"`
	// Forward is how the server is reached, as ipvsadm names it: "Route"
	// (direct routing) or "Tunnel"; empty from a daemon that predates
	// tunnels, which served Route only.
	Forward string `json:"forward,omitempty"`
	// Override is the runtime override in force, as `xlb list` marks
	// it: "drained" or "weight N".
	Override   string `json:"override,omitempty"`
	ActiveConn uint64 `json:"active_conn"`
	InActConn  uint64 `json:"inact_conn"`
	Stats      Stats  `json:"stats"`
}

// Stats are cumulative counters. In direct routing the balancer sees only
// the client→server direction, so Out* stay zero, as in IPVS -g.
type Stats struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"in_pkts"`
	OutPkts  uint64 `json:"out_pkts"`
	InBytes  uint64 `json:"in_bytes"`
	OutBytes uint64 `json:"out_bytes"`
}

// ReloadResult answers a reload.
type ReloadResult struct {
	OK     bool     `json:"ok"`
	Errors []string `json:"errors,omitempty"`
}

// ReloadTimeout bounds a reload, for the client that asks and the daemon
// that serves it alike: the daemon gives up within it (a reload waits at
// most for the previous one's VRRP instances to finish releasing) and
// answers why, so the client never gives up first.
const ReloadTimeout = 60 * time.Second

// StopTimeout bounds `xlb stop`: the daemon's VRRP masters hand their
// addresses over first (at most Master_Down_Interval each) and its scripts
// end (script.NotifyTimeout).
const StopTimeout = 90 * time.Second

// Client talks to a daemon's socket.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	// No client-wide timeout: each call's context bounds it.
	return &Client{hc: &http.Client{Transport: tr}}
}

// State fetches the running state.
func (c *Client) State(ctx context.Context) (State, error) {
	var st State
	err := c.do(ctx, http.MethodGet, PathState, &st)
	return st, err
}

// Reload asks the daemon to re-read its configuration. A rejected
// configuration comes back as an error listing every problem; the daemon
// keeps serving the old one.
func (c *Client) Reload(ctx context.Context) error {
	var r ReloadResult
	if err := c.do(ctx, http.MethodPost, PathReload, &r); err != nil {
		return err
	}
	if !r.OK {
		var b bytes.Buffer
		for _, e := range r.Errors {
			fmt.Fprintln(&b, e)
		}
		return fmt.Errorf("reload rejected, old configuration still served:\n%s", bytes.TrimSpace(b.Bytes()))
	}
	return nil
}

// Stop asks the daemon to remove its data path (detach, unpin, release its
// VRRP addresses) and exit, and waits until it has: until its socket no
// longer answers.
func (c *Client) Stop(ctx context.Context) error {
	var r ReloadResult
	if err := c.do(ctx, http.MethodPost, PathStop, &r); err != nil {
		return err
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://xlb"+PathState, nil)
		if err != nil {
			return err
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("xlb daemon: still running: %w", ctx.Err())
			}
			return nil // the socket is gone: the daemon has stopped
		}
		resp.Body.Close()
		select {
		case <-ctx.Done():
			return fmt.Errorf("xlb daemon: still running: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://xlb"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("xlb daemon: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("xlb daemon: %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnprocessableEntity {
		return fmt.Errorf("xlb daemon: %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("xlb daemon: %s: %w", path, err)
	}
	return nil
}
