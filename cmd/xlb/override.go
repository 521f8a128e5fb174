package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/xlb-project/xlb/internal/api"
)

// parseInterleaved parses args with fs allowing flags after positional
// arguments too ("xlb drain rs1 --wait", as ipvsadm takes them), and
// returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// overrideTimeout bounds one override request: it is one transaction.
const overrideTimeout = 30 * time.Second

func runWeight(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	reset := fs.Bool("reset", false, "drop the runtime weight: serve the configured (or health-check given) one")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if !(len(pos) == 2 && !*reset || len(pos) == 1 && *reset) {
		fmt.Fprintln(stderr, "usage: xlb weight SERVER[:PORT] WEIGHT | xlb weight --reset SERVER[:PORT] [--socket PATH]")
		return 2
	}
	req := api.OverrideRequest{Server: pos[0], Action: api.ActionWeight}
	if !*reset {
		w, err := strconv.ParseUint(pos[1], 10, 32)
		if err != nil {
			fmt.Fprintf(stderr, "xlb weight: weight %q: not a number from 0 to %d\n", pos[1], uint32(1<<31-1))
			return 2
		}
		w32 := uint32(w)
		req.Weight = &w32
	}
	return sendOverride(*socket, req, "xlb weight", stdout, stderr)
}

func runUndrain(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: xlb undrain SERVER[:PORT] [--socket PATH]")
		return 2
	}
	return sendOverride(*socket, api.OverrideRequest{Server: pos[0], Action: api.ActionUndrain}, "xlb undrain", stdout, stderr)
}

func runDrain(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	wait := fs.Bool("wait", false, "return once the server carries no established flow through this balancer")
	timeout := fs.Duration("timeout", 0, "with --wait, give up after this `duration` and say how many flows are left (0: wait as long as it takes)")
	interval := fs.Duration("interval", time.Second, "with --wait, how often to count the server's flows")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: xlb drain SERVER[:PORT] [--wait [--timeout D]] [--socket PATH]")
		return 2
	}
	server := pos[0]
	if code := sendOverride(*socket, api.OverrideRequest{Server: server, Action: api.ActionDrain}, "xlb drain", stdout, stderr); code != 0 || !*wait {
		return code
	}
	ctx := context.Background()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	active, err := waitDrained(ctx, api.NewClient(*socket), server, *interval)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "xlb drain: %s: still %d active flows after %s\n", server, active, *timeout)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "xlb drain: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: drained, no active flow\n", server)
	return 0
}

// waitDrained polls the daemon until server carries no established flow
// (IPVS's ActiveConn) in any service, and returns the last count. Closing
// flows (InActConn) are not waited for: their connections have ended.
func waitDrained(ctx context.Context, c *api.Client, server string, interval time.Duration) (uint64, error) {
	var active uint64
	for {
		st, err := c.State(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return active, ctx.Err()
			}
			return active, err
		}
		var found bool
		active, _, found = st.ServerConns(server)
		if !found || active == 0 {
			return active, nil
		}
		select {
		case <-ctx.Done():
			return active, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// sendOverride sends req and prints the overrides then in force.
func sendOverride(socket string, req api.OverrideRequest, name string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), overrideTimeout)
	defer cancel()
	all, err := api.NewClient(socket).Override(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	for _, o := range all {
		switch {
		case o.Drained:
			fmt.Fprintf(stdout, "%s drained\n", o.Server)
		case o.Weight != nil:
			fmt.Fprintf(stdout, "%s weight %d\n", o.Server, *o.Weight)
		}
	}
	return 0
}
