package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/config"
	"github.com/xlb-project/xlb/internal/daemon"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/metrics"
	"github.com/xlb-project/xlb/internal/override"
	"github.com/xlb-project/xlb/internal/service"
)

func runRun(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	file := fs.String("f", "/etc/keepalived/keepalived.conf", "configuration `file` (keepalived.conf or xlb YAML)")
	format := fs.String("format", config.FormatAuto, "configuration format: auto (by extension), keepalived or yaml")
	var ifaces interfaces
	fs.Var(&ifaces, "i", "`interface` to attach the XDP program to (required); repeat it or give a comma list for real servers behind other interfaces than the first, where clients arrive")
	mode := fs.String("xdp-mode", "auto", "XDP attach mode: native, generic or auto")
	pins := fs.String("bpffs", datapath.DefaultPinDir, "bpffs `directory` of the pinned maps")
	socket := fs.String("socket", api.DefaultSocket, "unix socket `path` of the runtime API")
	flows := fs.Uint("flows", datapath.DefaultFlowTableSize, "flow table `size` (connections tracked)")
	metricsAddr := fs.String("metrics", "", fmt.Sprintf("`address` of Prometheus /metrics and the status page, e.g. :%d (off if empty)", metrics.DefaultPort))
	stateDir := fs.String("state-dir", override.DefaultStateDir, "`directory` of the state kept across restarts (runtime overrides)")
	timeouts := fs.String("timeouts", "", "flow `lifetimes` after the last packet, overriding the configuration's: tcp=900s,tcp_fin=120s,udp=300s,syn_recv=60s,close=10s (any of them; ipvsadm --set)")
	verbose := fs.Bool("v", false, "log debug messages")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if len(ifaces) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: xlb run -f CONFIG -i IFACE[,IFACE...] [--xdp-mode native|generic|auto] [--bpffs DIR] [--socket PATH] [--metrics ADDR] [--state-dir DIR]")
		return 2
	}
	if *flows == 0 || *flows > math.MaxUint32 {
		fmt.Fprintf(stderr, "xlb run: --flows %d: want 1 to %d\n", *flows, uint64(math.MaxUint32))
		return 2
	}
	xmode, err := datapath.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "xlb run: %v\n", err)
		return 2
	}
	lifetimes, err := service.ParseTimeouts(*timeouts)
	if err != nil {
		fmt.Fprintf(stderr, "xlb run: %v\n", err)
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan chan error)
	go func() {
		for range hup {
			done := make(chan error, 1)
			select {
			case reload <- done:
				<-done // the daemon logs the outcome
			case <-ctx.Done():
				return
			}
		}
	}()

	ver, rev, _ := buildInfo()
	err = daemon.Run(ctx, daemon.Options{
		Metrics:       *metricsAddr,
		StateDir:      *stateDir,
		Build:         metrics.Build{Version: ver, Commit: rev},
		ConfigPath:    *file,
		Format:        *format,
		Interfaces:    ifaces,
		XDPMode:       xmode,
		PinDir:        *pins,
		Socket:        *socket,
		FlowTableSize: uint32(*flows),
		Timeouts:      lifetimes,
		Log:           log,
	}, reload)
	if err != nil {
		for _, e := range service.Errors(err) {
			fmt.Fprintln(stderr, e)
		}
		return 1
	}
	return 0
}

// interfaces is the -i flag: repeated, or a comma list, or both; an
// interface named twice is refused, as two programs cannot share one.
type interfaces []string

func (f *interfaces) String() string { return strings.Join(*f, ",") }

func (f *interfaces) Set(v string) error {
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return fmt.Errorf("empty interface name in %q", v)
		}
		if slices.Contains(*f, name) {
			return fmt.Errorf("interface %s given twice", name)
		}
		*f = append(*f, name)
	}
	return nil
}
