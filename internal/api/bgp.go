package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// BGP is the BGP speaker as it runs: its sessions, and each VIP with
// whether it is announced and why.
type BGP struct {
	LocalAS  uint32 `json:"local_as"`
	RouterID string `json:"router_id"`
	// Draining is set by `xlb drain-bgp`: every VIP leaves gracefully and
	// stays withdrawn until `xlb drain-bgp --undo`.
	Draining bool      `json:"draining"`
	Peers    []BGPPeer `json:"peers"`
	VIPs     []BGPVIP  `json:"vips"`
	// Digest identifies the Maglev tables this balancer serves (see
	// reconcile.Reconciler.Digest): balancers that share VIPs by ECMP
	// must show the same one.
	Digest string `json:"digest,omitempty"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	Address string `json:"address"`
	AS      uint32 `json:"as"`
	// State is the session's RFC 4271 state: IDLE, CONNECT, ACTIVE,
	// OPENSENT, OPENCONFIRM or ESTABLISHED.
	State string `json:"state"`
	// Since is when the session was established (zero unless it is).
	Since    time.Time `json:"since,omitzero"`
	Sent     uint64    `json:"prefixes_sent"`
	Received uint64    `json:"prefixes_received"`
}

// BGPVIP is one VIP and its announcement.
type BGPVIP struct {
	VIP string `json:"vip"`
	// State is "announced", "leaving" (announced with GRACEFUL_SHUTDOWN
	// until it is withdrawn) or "withdrawn".
	State       string   `json:"state"`
	Reason      string   `json:"reason"`
	Communities []string `json:"communities,omitempty"`
	MED         uint32   `json:"med"`
}

// WriteBGP prints the sessions and the VIPs of st as tables.
func WriteBGP(w io.Writer, st State, now time.Time) error {
	b := st.BGP
	if b == nil {
		_, err := fmt.Fprintln(w, "no bgp section: BGP is off")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ew := &errWriter{w: tw}
	draining := ""
	if b.Draining {
		draining = "  DRAINING (xlb drain-bgp --undo to return)"
	}
	digest := b.Digest
	if digest == "" {
		digest = "-"
	}
	ew.printf("Local AS %d, router id %s, tables %s%s\n\n", b.LocalAS, b.RouterID, digest, draining)
	ew.printf("Peer\tAS\tState\tUp\tSent\tReceived\n")
	for _, p := range b.Peers {
		up := "-"
		if !p.Since.IsZero() {
			up = now.Sub(p.Since).Truncate(time.Second).String()
		}
		ew.printf("%s\t%d\t%s\t%s\t%d\t%d\n", p.Address, p.AS, p.State, up, p.Sent, p.Received)
	}
	ew.printf("\nVIP\tState\tMED\tCommunities\tWhy\n")
	for _, v := range b.VIPs {
		ew.printf("%s\t%s\t%d\t%s\t%s\n", v.VIP, v.State, v.MED, strings.Join(v.Communities, " "), v.Reason)
	}
	if ew.err != nil {
		return ew.err
	}
	return tw.Flush()
}

// DrainBGP takes every VIP out of BGP gracefully (undo: puts them back)
// and returns once the daemon has started to.
func (c *Client) DrainBGP(ctx context.Context, undo bool) error {
	method := http.MethodPost
	if undo {
		method = http.MethodDelete
	}
	var r ReloadResult
	if err := c.do(ctx, method, PathBGPDrain, &r); err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("xlb daemon: %s", strings.Join(r.Errors, "; "))
	}
	return nil
}
