package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/xlb-project/xlb/internal/testutil"
)

// proxyIn forwards connections to a loopback port of the test's own
// namespace to addr inside host's namespace, and returns that port's
// address: the browser runs outside the topology and reaches the status
// page in lb1 through it, touching no other network.
func proxyIn(tb testing.TB, topo *testutil.Topology, host, addr string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var up net.Conn
			if err := topo.Do(host, func() error {
				var err error
				up, err = net.DialTimeout("tcp", addr, 5*time.Second)
				return err
			}); err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestStatusPageInBrowser loads the status page in headless chromium: it
// loads with no console error, lists the services, and a service's packet
// rate rises while echo connections run through the VIP.
func TestStatusPageInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (Debian package chromium; make deps installs it)")
	}
	topo := newTopology(t)
	startRealServers(t, topo)
	all := map[string]int{testutil.RS1: 1, testutil.RS2: 1, testutil.RS3: 1}
	conf := keepalivedConf(
		virtualServer{VIP: testutil.VIP4, Port: echoPort, Proto: "TCP", Reals: reals(all)},
		virtualServer{VIP: testutil.VIP4, Port: httpPort, Proto: "TCP", Reals: reals(all)})
	startLB(t, topo, testutil.LB1, conf, "--metrics", metricsAddr)
	page := "http://" + proxyIn(t, topo, testutil.LB1, metricsAddr) + "/"

	// Without the background-networking flags chromium reaches for the
	// (closed) network at start; a fresh profile keeps runs independent.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	// Every console error, uncaught exception and browser log error (a
	// failed request, say) from the first navigation on.
	cctx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(cctx)
	var consoleErrors []string
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				consoleErrors = append(consoleErrors, m.String())
			}
		}
	}()

	svc := fmt.Sprintf("%s:%d/tcp", testutil.VIP4, echoPort)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-service="`+svc+`"]`)),
	); err != nil {
		t.Fatalf("load %s: %v", page, err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("tr[data-service]").length`))
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Errorf("the page lists %d services, want 2", rows)
	}

	pool := startEchoPool(t, topo, 10)
	pool.progress(t, "connecting", 3)
	rate := func() (float64, error) {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-service="`+svc+`"] td.pps').textContent`))
		if err != nil {
			return 0, err
		}
		return strconv.ParseFloat(s, 64)
	}
	waitFor(t, 20*time.Second, "the echo service's packet rate to rise on the page", func() (bool, string) {
		v, err := rate()
		if err != nil {
			return false, err.Error()
		}
		return v > 0, fmt.Sprintf("%v packets/s", v)
	})
	for i, err := range pool.stop() {
		if err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
	stopConsole()
	<-consoleDone
	if len(consoleErrors) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(consoleErrors, "\n"))
	}
}
