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
)

// State is the running state as `xlb list` shows it.
type State struct {
	// Taken is when the counters were read; two States give rates.
	Taken    time.Time `json:"taken"`
	Config   string    `json:"config"`
	Services []Service `json:"services"`
	// VRRP is every vrrp_instance as it runs, in configuration order.
	VRRP []VRRPInstance `json:"vrrp,omitempty"`
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
	Installed   bool   `json:"installed"`
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
	Sorry      bool   `json:"sorry,omitempty"`
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
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
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
