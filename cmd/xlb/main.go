// Command xlb is the xlb load balancer: one binary whose subcommands run
// the daemon, inspect it and check configurations.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. Adding a subcommand is one entry in commands
// and one file holding its run function.
type command struct {
	summary string
	// run parses args with fs (already named after the command) and does
	// the work; the returned value is the process exit status.
	run func(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"check":     {summary: "validate a configuration and print what xlb would serve", run: runCheck},
	"run":       {summary: "run the balancer daemon on an interface", run: runRun},
	"list":      {summary: "list the running services like ipvsadm -L -n", run: runList},
	"reload":    {summary: "make the running daemon re-read its configuration", run: runReload},
	"stop":      {summary: "remove the data path (detach, unpin, release VIPs) and stop the daemon", run: runStop},
	"vrrp":      {summary: "list the VRRP instances: state, priority, advertisements", run: runVRRP},
	"bgp":       {summary: "list the BGP peers and the announced VIPs, and why", run: runBGP},
	"drain-bgp": {summary: "withdraw every VIP from BGP gracefully (--undo: announce again)", run: runDrainBGP},
	"version":   {summary: "print the version and the commit it was built from", run: runVersion},
	"weight":    {summary: "set a real server's weight at runtime (ipvsadm -e -w); --reset returns to the configured one", run: runWeight},
	"drain":     {summary: "drain a real server: weight 0 everywhere, flows kept; --wait until it carries none", run: runDrain},
	"undrain":   {summary: "end a drain: the real server serves at its weight again", run: runUndrain},
}

// man reads every command's help, so it joins the table at init: a
// literal entry would make commands refer to itself.
func init() {
	commands["man"] = command{summary: "print the xlb(8) manual page (roff), generated from this help", run: runMan}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "xlb: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("xlb "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	return cmd.run(fs, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: xlb COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'xlb COMMAND -h' for a command's flags.")
}
