package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/xlb-project/xlb/internal/api"
)

func runVRRP(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	return runStateView(fs, args, stdout, stderr, "vrrp", "the instances",
		func(st api.State) any { return st.VRRP }, api.WriteVRRP)
}

// runStateView is a command that prints a part of the daemon's state: as
// a table, or with --json as JSON (what names the part in the help).
func runStateView(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, name, what string,
	part func(api.State) any, table func(io.Writer, api.State) error) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	asJSON := fs.Bool("json", false, "print "+what+" as JSON")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage: xlb %s [--json] [--socket PATH]\n", name)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := api.NewClient(*socket).State(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "xlb %s: %v\n", name, err)
		return 1
	}
	if *asJSON {
		return writeJSON(stdout, stderr, part(st))
	}
	if err := table(stdout, st); err != nil {
		fmt.Fprintf(stderr, "xlb %s: %v\n", name, err)
		return 1
	}
	return 0
}
