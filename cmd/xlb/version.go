package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

// version and commit are set at link time (the Makefile passes
// -ldflags "-X main.version=... -X main.commit=..."); a plain go build says
// dev, and takes the commit from the toolchain's VCS stamp when it made one.
var (
	version = "dev"
	commit  = ""
)

// buildInfo is the version, the commit and whether the tree had changes,
// as the Go toolchain recorded them in the binary.
func buildInfo() (ver, rev string, modified bool) {
	ver, rev = version, commit
	if rev != "" {
		return ver, rev, false
	}
	rev = "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	return ver, rev, modified
}

func runVersion(fs *flag.FlagSet, args []string, stdout, _ io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ver, rev, modified := buildInfo()
	if modified {
		rev += " (modified)"
	}
	fmt.Fprintf(stdout, "xlb %s commit %s\n", ver, rev)
	return 0
}
