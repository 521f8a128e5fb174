package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/xlb-project/xlb/internal/api"
)

func runBGP(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	return runStateView(fs, args, stdout, stderr, "bgp", "the peers and VIPs",
		func(st api.State) any { return st.BGP },
		func(w io.Writer, st api.State) error { return api.WriteBGP(w, st, time.Now()) })
}

func runDrainBGP(fs *flag.FlagSet, args []string, _, stderr io.Writer) int {
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	undo := fs.Bool("undo", false, "announce the VIPs again")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: xlb drain-bgp [--undo] [--socket PATH]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := api.NewClient(*socket).DrainBGP(ctx, *undo); err != nil {
		fmt.Fprintf(stderr, "xlb drain-bgp: %v\n", err)
		return 1
	}
	return 0
}
