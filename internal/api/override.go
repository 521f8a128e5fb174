package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// PathOverride takes runtime weight and drain overrides (POST an
// OverrideRequest; the answer is an OverrideResult).
const PathOverride = "/v1/override"

// Override actions, in ipvsadm's spirit: a weight for a real server
// (ipvsadm -e -w), a drain (weight 0 everywhere it serves, its flows
// kept) and its end.
const (
	ActionWeight  = "weight"
	ActionDrain   = "drain"
	ActionUndrain = "undrain"
)

// OverrideRequest changes the runtime override of one real server.
type OverrideRequest struct {
	// Server is a real server's address, or address:port to name one of
	// several ports of one address.
	Server string `json:"server"`
	// Action is ActionWeight, ActionDrain or ActionUndrain.
	Action string `json:"action"`
	// Weight is the weight to serve with for ActionWeight; nil returns to
	// the configured (or health-check given) weight.
	Weight *uint32 `json:"weight,omitempty"`
}

// Override is a real server's runtime override as it is kept and
// persisted.
type Override struct {
	Server string `json:"server"`
	// Weight replaces the configured weight while set.
	Weight *uint32 `json:"weight,omitempty"`
	// Drained serves the server at weight 0 everywhere, whatever Weight
	// says; its flows carry on.
	Drained bool `json:"drained,omitempty"`
}

// OverrideResult answers an OverrideRequest.
type OverrideResult struct {
	OK bool `json:"ok"`
	// Error says why the request changed nothing, naming the field.
	Error string `json:"error,omitempty"`
	// Overrides are every override in force after the request.
	Overrides []Override `json:"overrides,omitempty"`
}

// Override sends req and returns the overrides in force after it; a
// rejected request comes back as an error and changed nothing.
func (c *Client) Override(ctx context.Context, req OverrideRequest) ([]Override, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://xlb"+PathOverride, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("xlb daemon: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("xlb daemon: %s: %w", PathOverride, err)
	}
	var r OverrideResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("xlb daemon: %s: %s: %s", PathOverride, resp.Status, bytes.TrimSpace(raw))
	}
	if !r.OK {
		return nil, fmt.Errorf("server %s: %s", req.Server, r.Error)
	}
	return r.Overrides, nil
}

// ServerConns is what a real server carries through this balancer, summed
// over every service it serves in st.
func (st State) ServerConns(server string) (active, inactive uint64, found bool) {
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if b.Sorry || !MatchServer(server, b.Addr, b.Port) {
				continue
			}
			found = true
			active += b.ActiveConn
			inactive += b.InActConn
		}
	}
	return active, inactive, found
}

// MatchServer reports whether server ("addr" or "addr:port") names the
// backend at addr, port.
func MatchServer(server, addr string, port uint16) bool {
	return server == addr || server == hostPort(addr, port)
}
