package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// processCPU is the CPU time pid has used, user and system.
func processCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// The command name may hold spaces: fields count from after its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick
}

// BenchmarkScrape measures what a Prometheus scrape of 1,000 services x 10
// backends costs the daemon, in its own CPU time (read from /proc, so the
// client's side is not counted), against what a reload of the same
// configuration (every table rebuilt) costs it in the same run. The issue's
// budget is 50 ms of daemon CPU per scrape.
func BenchmarkScrape(b *testing.B) {
	topo := newTopology(b)
	addrs := []netip.Addr{}
	for _, rs := range realServers {
		addrs = append(addrs, testutil.HostIP4(rs))
		for _, a := range extraBackendAddrs[rs] {
			topo.Exec(b, rs, "ip", "addr", "add", a.String()+"/24", "dev", "eth0")
			addrs = append(addrs, a)
		}
	}
	conf := filepath.Join(b.TempDir(), "keepalived.conf")
	writeFile(b, conf, benchKeepalived(addrs, 1))
	d := startDaemon(b, topo, conf, "--metrics", metricsAddr)
	pid := d.proc.Cmd.Process.Pid
	// The first scrape measures the kernel's tick rate once (a sleep):
	// not a scrape's cost.
	if n := len(scrape(b, topo)); n < benchServices*benchBackends*8 {
		b.Fatalf("a scrape holds %d series, want at least %d", n, benchServices*benchBackends*8)
	}

	scrapes := 0
	cpu0 := processCPU(b, pid)
	for b.Loop() {
		if _, err := fetchIn(topo, testutil.LB1, metricsAddr, "/metrics"); err != nil {
			b.Fatal(err)
		}
		scrapes++
	}
	// At least a second of scraping, so that the 10 ms ticks of the CPU
	// count are a small error.
	for start := time.Now(); time.Since(start) < time.Second || scrapes < 10; scrapes++ {
		if _, err := fetchIn(topo, testutil.LB1, metricsAddr, "/metrics"); err != nil {
			b.Fatal(err)
		}
	}
	scrapeCPU := (processCPU(b, pid) - cpu0) / time.Duration(scrapes)

	const reloads = 4
	cpu0 = processCPU(b, pid)
	for i := range reloads {
		writeFile(b, conf, benchKeepalived(addrs, 2-i%2))
		d.xlb(b, "reload")
	}
	reloadCPU := (processCPU(b, pid) - cpu0) / reloads

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(scrapeCPU.Microseconds())/1000, "scrape-cpu-ms")
	b.ReportMetric(float64(reloadCPU.Microseconds())/1000, "reload-cpu-ms")
	if reloadCPU > 0 {
		b.ReportMetric(float64(scrapeCPU)/float64(reloadCPU), "scrape/reload")
	}
	b.Logf("%d scrapes, %d reloads of %d services x %d backends", scrapes, reloads, benchServices, benchBackends)
}
