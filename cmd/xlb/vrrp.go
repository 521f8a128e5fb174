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
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the daemon")
	asJSON := fs.Bool("json", false, "print the instances as JSON")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: xlb vrrp [--json] [--socket PATH]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := api.NewClient(*socket).State(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "xlb vrrp: %v\n", err)
		return 1
	}
	if *asJSON {
		return writeJSON(stdout, stderr, st.VRRP)
	}
	if err := api.WriteVRRP(stdout, st); err != nil {
		fmt.Fprintf(stderr, "xlb vrrp: %v\n", err)
		return 1
	}
	return 0
}
