package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/xlb-project/xlb/internal/config"
	"github.com/xlb-project/xlb/internal/preflight"
	"github.com/xlb-project/xlb/internal/service"
)

func runCheck(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	file := fs.String("f", "/etc/keepalived/keepalived.conf", "configuration `file` to check")
	format := fs.String("format", config.FormatAuto, "configuration format: auto (by extension), keepalived or yaml")
	output := fs.String("output", "plan", "what to print: plan (what xlb would serve) or yaml (the configuration in xlb's native format)")
	noScripts := fs.Bool("no-script-check", false, "skip keepalived's script security, which reads the scripts on this machine: for a configuration checked elsewhere than where it runs")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xlb check: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *output != "plan" && *output != "yaml" {
		fmt.Fprintf(stderr, "xlb check: unknown --output %q (want plan or yaml)\n", *output)
		return 2
	}
	cfg, warns, err := preflight.Load(*file, *format, preflight.Options{SkipScripts: *noScripts})
	for _, w := range warns {
		fmt.Fprintln(stderr, w)
	}
	if err != nil {
		for _, e := range service.Errors(err) {
			fmt.Fprintln(stderr, e)
		}
		return 1
	}
	if *output == "yaml" {
		out, err := config.MarshalYAML(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "xlb check: %v\n", err)
			return 1
		}
		stdout.Write(out)
		return 0
	}
	writePlan(stdout, cfg)
	return 0
}
