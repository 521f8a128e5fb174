package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/xlb-project/xlb/internal/api"
)

func runList(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	fs.Bool("n", true, "numeric output (always: accepted for ipvsadm habits)")
	stats := fs.Bool("stats", false, "show counters: connections, packets, bytes (ipvsadm --stats)")
	rate := fs.Bool("rate", false, "show rates over one second (ipvsadm --rate)")
	asJSON := fs.Bool("json", false, "print the daemon's state as JSON")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || (*stats && *rate) {
		fmt.Fprintln(stderr, "usage: xlb list [-n] [--stats | --rate] [--json] [--socket PATH]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := api.NewClient(*socket)
	st, err := c.State(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "xlb list: %v\n", err)
		return 1
	}
	if *asJSON {
		return writeJSON(stdout, stderr, st)
	}
	format, prev := api.ListDefault, (*api.State)(nil)
	switch {
	case *stats:
		format = api.ListStats
	case *rate:
		// ipvsadm's rates are kernel estimates; ours are the difference
		// of two readings a second apart.
		format, prev = api.ListRate, &st
		time.Sleep(time.Second)
		if st, err = c.State(ctx); err != nil {
			fmt.Fprintf(stderr, "xlb list: %v\n", err)
			return 1
		}
	}
	if st.Detached != "" {
		fmt.Fprintf(stderr, "xlb list: warning: no packet reaches these services: %s\n", st.Detached)
	}
	if err := api.WriteList(stdout, st, format, prev); err != nil {
		fmt.Fprintf(stderr, "xlb list: %v\n", err)
		return 1
	}
	return 0
}

func runReload(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), api.ReloadTimeout)
	defer cancel()
	if err := api.NewClient(*socket).Reload(ctx); err != nil {
		fmt.Fprintf(stderr, "xlb reload: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "reloaded")
	return 0
}

func runStop(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), api.StopTimeout)
	defer cancel()
	if err := api.NewClient(*socket).Stop(ctx); err != nil {
		fmt.Fprintf(stderr, "xlb stop: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "stopped: the XDP program is detached and its maps unpinned")
	return 0
}
