package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/testutil"
)

// healthBenchSlack lets a slow detection be measured rather than cut off;
// one beyond keepalived's bound plus healthSlack still fails the benchmark.
const healthBenchSlack = 10 * time.Second

// healthFailure is a way for rs1 to fail and come back.
type healthFailure struct {
	name string
	// cycles is how many failures and recoveries an iteration measures:
	// one would sample a single phase of the probe schedule, and the
	// benchmark harness stops at one iteration of anything that takes
	// seconds.
	cycles int
	// fail and heal return the moment just before they acted.
	fail, heal func(tb testing.TB, topo *testutil.Topology, rs1 *testutil.Proc) time.Time
	// silent failures make probes time out rather than fail at once, so
	// a probe in flight when rs1 heals still fails, connect_timeout later.
	silent bool
}

// healthFailures: rs1's server stops listening, so probes are refused at
// once (a crashed daemon); or rs1 stops answering the balancer, so probes
// time out (a host gone, a cable pulled), the case keepalived's bound is
// written for. Connections from the client still reach rs1 then; only
// the timing is measured.
var healthFailures = []healthFailure{{
	name:   "refused",
	cycles: 3,
	fail: func(tb testing.TB, _ *testutil.Topology, p *testutil.Proc) time.Time {
		return healthToggle(tb, p, testutil.RS1, false)
	},
	heal: func(tb testing.TB, _ *testutil.Topology, p *testutil.Proc) time.Time {
		return healthToggle(tb, p, testutil.RS1, true)
	},
}, {
	name:   "silent",
	cycles: 2,
	silent: true,
	fail: func(tb testing.TB, topo *testutil.Topology, _ *testutil.Proc) time.Time {
		return healthBlackhole(tb, topo, "add")
	},
	heal: func(tb testing.TB, topo *testutil.Topology, _ *testutil.Proc) time.Time {
		return healthBlackhole(tb, topo, "del")
	},
}}

// healthBlackhole adds or deletes, on rs1, a blackhole route to lb1: rs1
// drops its answers to the balancer's probes (SYN-ACKs) and nothing else.
func healthBlackhole(tb testing.TB, topo *testutil.Topology, op string) time.Time {
	tb.Helper()
	at := time.Now()
	topo.Exec(tb, testutil.RS1, "ip", "route", op, "blackhole", testutil.HostIP4(testutil.LB1).String()+"/32")
	return at
}

// BenchmarkHealth measures, on the seed's shape (a web service under
// HTTP_GET and an echo service under TCP_CHECK sharing rs1..rs3, with
// inhibit_on_failure), how long after rs1 fails the API shows it at weight
// 0 (detection) and how long after it is healthy again it is back at its
// weight (recovery), for the seed's settings and the fast ones and
// for each of healthFailures. Each is reported in seconds and as a
// fraction of keepalived's bound for the check (healthSettings.detectBound,
// recoverBound): mean and worst.
func BenchmarkHealth(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    healthSettings
	}{
		{"seed", healthSeed},
		{"fast", healthFast},
	} {
		b.Run(bc.name, func(b *testing.B) {
			topo := newTopology(b)
			procs := startRealServers(b, topo)
			conf := filepath.Join(b.TempDir(), "keepalived.conf")
			writeFile(b, conf, healthConf(bc.h, true))
			d := startDaemon(b, topo, conf)
			// See testHealthDrain: measure checks that have reached a
			// verdict.
			warm := time.Now().Add(bc.h.delayLoop + bc.h.connectTimeout)
			healthWaitConfigured(b, d)
			time.Sleep(time.Until(warm))
			for _, f := range healthFailures {
				b.Run(f.name, func(b *testing.B) { benchHealth(b, bc.h, f, topo, procs[testutil.RS1], d) })
			}
		})
	}
}

func benchHealth(b *testing.B, h healthSettings, f healthFailure, topo *testutil.Topology, p *testutil.Proc, d *daemon) {
	rs1 := testutil.HostIP4(testutil.RS1)
	atWeight := func(w uint32) func(s *api.Service) (bool, string) {
		return func(s *api.Service) (bool, string) {
			be := findBackend(s, rs1)
			return be != nil && be.Weight == w, fmt.Sprintf("rs1 listed as %+v, want weight %d", be, w)
		}
	}
	recoverBound := h.recoverBound
	if f.silent {
		recoverBound = func(check string) time.Duration { return h.recoverBound(check) + h.connectTimeout }
	}
	detect := map[string][]time.Duration{}
	recovery := map[string][]time.Duration{}
	// A seeded source: runs are comparable, phases still spread.
	rng := rand.New(rand.NewPCG(5, 5))
	b.ResetTimer()
	for range b.N {
		for range f.cycles {
			// A failure comes at any point of the probe schedule: a
			// random pause puts it at a random phase.
			time.Sleep(time.Duration(rng.Int64N(int64(h.delayLoop))))
			failed := f.fail(b, topo, p)
			took := healthWaitEach(b, d, failed, "rs1 to leave the table", h.detectBound, healthBenchSlack, atWeight(0))
			for port, t := range took {
				detect[healthCheckOf(port)] = append(detect[healthCheckOf(port)], t)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(h.delayLoop))))
			healed := f.heal(b, topo, p)
			took = healthWaitEach(b, d, healed, "rs1 to come back", recoverBound, healthBenchSlack, atWeight(uint32(healthWeights[testutil.RS1])))
			for port, t := range took {
				recovery[healthCheckOf(port)] = append(recovery[healthCheckOf(port)], t)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	for _, s := range healthServices {
		kind := strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(s.check, "_CHECK"), "_GET"))
		healthReport(b, kind+"-detect", detect[s.check], h.detectBound(s.check))
		healthReport(b, kind+"-recover", recovery[s.check], recoverBound(s.check))
	}
}

// healthCheckOf returns the check of a healthServices port.
func healthCheckOf(port uint16) string {
	for _, s := range healthServices {
		if s.port == port {
			return s.check
		}
	}
	panic(fmt.Sprintf("no health service on port %d", port))
}

// healthReport reports the mean of ds in seconds, and the mean and the
// worst as fractions of bound; one beyond bound plus healthSlack fails.
func healthReport(b *testing.B, name string, ds []time.Duration, bound time.Duration) {
	if len(ds) == 0 {
		b.Fatalf("%s: no measurement", name)
	}
	var sum, worst time.Duration
	for _, d := range ds {
		sum += d
		worst = max(worst, d)
	}
	mean := sum / time.Duration(len(ds))
	b.ReportMetric(mean.Seconds(), name+"-s")
	b.ReportMetric(float64(mean)/float64(bound), name+"/bound")
	b.ReportMetric(float64(worst)/float64(bound), name+"-max/bound")
	if worst > bound+healthSlack {
		b.Errorf("%s: %v, beyond keepalived's bound %v plus %v", name, worst, bound, healthSlack)
	}
}
