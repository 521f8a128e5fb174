package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// runMan prints the xlb(8) manual page in roff. It is generated from the
// help text the commands themselves print (usage and each command's -h),
// so the page cannot drift from the binary; `make deb` installs it.
func runMan(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ver, _, _ := buildInfo()
	var b strings.Builder
	fmt.Fprintf(&b, ".TH XLB 8 \"\" \"xlb %s\" \"System Administration\"\n", roffEscape(ver))
	b.WriteString(".SH NAME\nxlb \\- XDP layer-4 load balancer for direct routing, replacing IPVS and keepalived\n")
	b.WriteString(".SH SYNOPSIS\n.B xlb\n.I command\n[\n.I flags\n]\n")
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString("xlb forwards the traffic of virtual services to real servers by direct routing with an XDP program, " +
		"picks real servers with weighted Maglev, probes them with keepalived's health checkers and runs VRRP. " +
		"It reads keepalived.conf or its own YAML.\n")
	b.WriteString(".SH COMMANDS\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := commands[name]
		// Each command's own -h is the flag reference.
		var help bytes.Buffer
		cfs := flag.NewFlagSet("xlb "+name, flag.ContinueOnError)
		cfs.SetOutput(&help)
		c.run(cfs, []string{"-h"}, io.Discard, &help)
		fmt.Fprintf(&b, ".SS %s\n%s.\n", roffEscape(name), roffEscape(c.summary))
		if text := strings.TrimSpace(help.String()); text != "" {
			fmt.Fprintf(&b, ".PP\n.nf\n%s\n.fi\n", roffEscape(text))
		}
	}
	b.WriteString(".SH FILES\n.TP\n/etc/xlb/\nexample configuration\n.TP\n/run/xlb/xlb.sock\nruntime API socket\n" +
		".TP\n/var/lib/xlb/overrides.json\nruntime weight and drain overrides (xlb weight, xlb drain), kept across restarts\n" +
		".TP\n/sys/fs/bpf/xlb/\npinned maps and XDP link\n")
	b.WriteString(".SH SEE ALSO\n.BR keepalived.conf (5),\n.BR ipvsadm (8)\n")
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		fmt.Fprintf(stderr, "xlb man: %v\n", err)
		return 1
	}
	return 0
}

// roffEscape keeps text literal in roff: backslashes, and a leading dot
// or quote that would start a request.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}
