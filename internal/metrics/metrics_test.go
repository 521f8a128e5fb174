package metrics

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
)

// fakeDatapath answers with fixed counters.
type fakeDatapath struct{}

func (fakeDatapath) Counters() (map[datapath.Counter]uint64, error) {
	return map[datapath.Counter]uint64{datapath.CounterPassNotIP: 3, datapath.CounterPassNotVIP: 7, datapath.CounterFlowNew: 12}, nil
}
func (fakeDatapath) FlowTableCapacity() uint32 { return 1 << 20 }

// downSet is a health checker that fails the backends it lists.
type downSet map[string]bool

func (d downSet) Up(svc service.ServiceKey, be netip.AddrPort) bool {
	return !d[svc.String()+" "+be.String()]
}

// fixture is a source of nsvc services with nbe backends each; the first
// backend of the first service is drained, the last is down.
func fixture(nsvc, nbe int) (Source, *service.Config) {
	cfg := &service.Config{}
	st := api.State{Taken: time.Unix(1700000000, 0), FlowEntries: 42}
	down := downSet{}
	for i := range nsvc {
		vip := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i/250)})
		port := uint16(80 + i%250)
		s := service.Service{VIP: vip, Port: port, Proto: service.TCP, Scheduler: "wrr"}
		as := api.Service{Proto: "TCP", Addr: vip.String(), Port: port, Scheduler: "wrr", Installed: true,
			Stats: api.Stats{Conns: uint64(10 * (i + 1)), InPkts: uint64(100 * (i + 1)), InBytes: uint64(6000 * (i + 1))}}
		for j := range nbe {
			a := netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + j)})
			s.Backends = append(s.Backends, service.Backend{Addr: a, Port: 80, Weight: 1 + j})
			b := api.Backend{Addr: a.String(), Port: 80, Weight: uint32(1 + j), ConfigWeight: uint32(1 + j), MAC: "02:00:00:00:00:01",
				ActiveConn: uint64(j), InActConn: 1, Stats: api.Stats{Conns: uint64(j + 1), InPkts: uint64(10 * (j + 1)), InBytes: uint64(600 * (j + 1))}}
			if i == 0 && j == 0 {
				b.Weight, b.Override = 0, "drained"
			}
			if i == 0 && j == nbe-1 {
				down[s.Key().String()+" "+s.Backends[j].AddrPort().String()] = true
				continue // down without inhibit: not listed
			}
			as.Backends = append(as.Backends, b)
		}
		cfg.Services = append(cfg.Services, s)
		st.Services = append(st.Services, as)
	}
	st.VRRP = []api.VRRPInstance{{Name: "VI_1", Interface: "eth0", VRID: 51, State: "MASTER", Priority: 150, BasePriority: 150,
		VIPs: []string{"192.0.2.10/32"}, Sent: 99, Received: 3}}
	return Source{
		State:    func() (api.State, error) { return st, nil },
		Health:   down,
		Datapath: fakeDatapath{},
	}, cfg
}

// scrape is one scrape of m through its handler, as Prometheus does it.
func scrape(tb testing.TB, m *Metrics) []byte {
	tb.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	m.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

var timestampLine = regexp.MustCompile(`(?m)^(xlb_reload_last_success_timestamp_seconds) .*$`)

// TestScrapeGolden: the names, help texts, types and labels of one scrape.
func TestScrapeGolden(t *testing.T) {
	src, cfg := fixture(2, 3)
	m := New(src, Build{Version: "v1.2.3", Commit: "abc123"}, false)
	m.Loaded(cfg, nil)
	m.Loaded(nil, errors.New("line 3: bad"))
	m.ObserveProbe(healthcheck.ProbeResult{Kind: service.CheckTCP, OK: true, Duration: 3 * time.Millisecond})
	m.ObserveProbe(healthcheck.ProbeResult{Kind: service.CheckHTTP, OK: false, Duration: 1500 * time.Millisecond})
	got := scrape(t, m)
	got = timestampLine.ReplaceAll(got, []byte("$1 TIMESTAMP"))
	got = bytes.ReplaceAll(got, []byte(runtime.Version()), []byte("GOVERSION"))
	// The digest follows the model's encoding, which other changes move:
	// TestDigest checks what it must do.
	got = bytes.ReplaceAll(got, []byte(Digest(cfg)), []byte("DIGEST"))
	testutil.Golden(t, "testdata/scrape.golden", got)
}

// TestPromtool: promtool, Prometheus's own linter, finds nothing to say
// about a scrape (names, units, _total, help).
func TestPromtool(t *testing.T) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; make deps installs it)")
	}
	src, cfg := fixture(3, 4)
	m := New(src, Build{Version: "v1.2.3", Commit: "abc123"}, true)
	m.Loaded(cfg, nil)
	m.ObserveProbe(healthcheck.ProbeResult{Kind: service.CheckTCP, OK: true, Duration: time.Millisecond})
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, m))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestCardinality: every family's label set is bounded by the
// configuration (services, backends, VRRP instances) or by a fixed list,
// never by traffic: the number of series grows with the configuration
// only, and no label takes a value outside its list.
func TestCardinality(t *testing.T) {
	const nsvc, nbe = 7, 5
	src, cfg := fixture(nsvc, nbe)
	m := New(src, Build{Version: "v", Commit: "c"}, false)
	m.Loaded(cfg, nil)
	for range 100 {
		m.ObserveProbe(healthcheck.ProbeResult{Kind: service.CheckMisc, OK: true, Duration: time.Millisecond})
	}
	mfs, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	bounded := map[string]map[string]bool{
		"check":  {"tcp": true, "http": true, "ssl": true, "misc": true},
		"result": {"success": true, "failure": true},
		"state":  setOf(vrrpStates...),
		"reason": {"not_ip": true, "malformed": true, "fragment": true, "not_l4": true, "not_vip": true, "no_backend": true, "other_host": true},
		"event":  {"new": true, "rehash": true},
	}
	// Labels whose values come from the configuration, and how many
	// values it allows.
	fromConfig := map[string]int{"service": nsvc, "backend": nbe, "instance": 1, "digest": 1, "version": 1, "commit": 1, "goversion": 1}
	for _, mf := range mfs {
		values := map[string]map[string]bool{}
		for _, met := range mf.Metric {
			for _, lp := range met.Label {
				if values[lp.GetName()] == nil {
					values[lp.GetName()] = map[string]bool{}
				}
				values[lp.GetName()][lp.GetValue()] = true
				if allowed, ok := bounded[lp.GetName()]; ok && !allowed[lp.GetValue()] {
					t.Errorf("%s: label %s=%q is not in its fixed list", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
		for name, vs := range values {
			if _, ok := bounded[name]; ok {
				continue
			}
			limit, ok := fromConfig[name]
			if !ok {
				t.Errorf("%s: label %s is neither fixed nor from the configuration", mf.GetName(), name)
			} else if len(vs) > limit {
				t.Errorf("%s: label %s has %d values, the configuration allows %d", mf.GetName(), name, len(vs), limit)
			}
		}
		if n, max := len(mf.Metric), nsvc*nbe*len(vrrpStates); n > max {
			t.Errorf("%s: %d series", mf.GetName(), n)
		}
	}
}

func setOf(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

// TestStatusPage: the page and its assets are served from the binary, and
// status.json carries every service, backend health and the events.
func TestStatusPage(t *testing.T) {
	src, cfg := fixture(2, 3)
	m := New(src, Build{}, false)
	m.Loaded(cfg, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for path, want := range map[string]string{
		"/":            `<script src="app.js">`,
		"/app.js":      "status.json",
		"/style.css":   "table",
		"/status.json": `"service":"192.0.2.10:80/tcp","backend":"198.51.100.13:80","up":false`,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(b.String(), want) {
			t.Errorf("GET %s: %s, want it to contain %q:\n%.500s", path, resp.Status, want, b.String())
		}
	}
}

// BenchmarkScrape is one scrape of 1,000 services x 10 backends, encoded
// as Prometheus asks for it (the data path read is the fake's: see the
// e2e benchmark for the real maps).
func BenchmarkScrape(b *testing.B) {
	src, cfg := fixture(1000, 10)
	m := New(src, Build{}, false)
	m.Loaded(cfg, nil)
	h := m.Handler()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	w := &countingWriter{header: http.Header{}}
	for b.Loop() {
		w.n = 0
		h.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(w.n), "bytes/scrape")
}

// countingWriter is a ResponseWriter that only counts, as a socket would
// take the bytes away.
type countingWriter struct {
	header http.Header
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(int)             {}
func (w *countingWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// TestDigest: one configuration, one digest; any change, another.
func TestDigest(t *testing.T) {
	_, a := fixture(2, 3)
	_, b := fixture(2, 3)
	if Digest(a) != Digest(b) || !strings.HasPrefix(Digest(a), "sha256:") {
		t.Errorf("equal configurations: %s and %s", Digest(a), Digest(b))
	}
	b.Services[1].Backends[2].Weight++
	if Digest(a) == Digest(b) {
		t.Error("a weight change left the digest as it was")
	}
}
