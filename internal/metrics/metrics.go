// Package metrics exposes xlb to Prometheus and to people: the metrics of
// every service, backend, health check, VRRP instance and reload on
// /metrics, and a read-only status page on /. Traffic counters come from
// the data path's per-CPU maps, summed when scraped: nothing is counted on
// the packet path for them.
package metrics

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/datapath"
	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/service"
)

// DefaultPort is the port documented for --metrics (xlb's entry in the
// Prometheus default port allocations would go here; 9469 is unused there).
const DefaultPort = 9469

// Source is what the collector reads at scrape time; the daemon wires it.
type Source struct {
	// State is the running state as `xlb list` shows it: weights,
	// overrides, counters and connection counts.
	State func() (api.State, error)
	// Health says whether a backend's checks pass.
	Health interface {
		Up(svc service.ServiceKey, be netip.AddrPort) bool
	}
	// Datapath reads the program's counters.
	Datapath Datapath
}

// Datapath is what the collector reads of the data path
// (*datapath.Datapath).
type Datapath interface {
	Counters() (map[datapath.Counter]uint64, error)
	FlowTableCapacity() uint32
}

// Build names the binary for xlb_build_info.
type Build struct {
	Version, Commit string
}

// Event is a reload or a health transition, for the status page.
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // "reload" or "health"
	Text string    `json:"text"`
	OK   bool      `json:"ok"`
}

// errStarting answers a scrape before the first configuration is served.
var errStarting = errors.New("xlb is starting: no configuration served yet")

// maxEvents bounds the events the status page lists.
const maxEvents = 20

// Metrics collects xlb's metrics. Its methods are safe for concurrent
// use.
type Metrics struct {
	src Source
	// reg holds the metrics xlb updates as things happen; the per-service
	// and per-backend families are built at each scrape (collect).
	reg        *prometheus.Registry
	probes     *prometheus.CounterVec
	probeTime  *prometheus.HistogramVec
	reloads    *prometheus.CounterVec
	lastReload prometheus.Gauge
	configInfo *prometheus.GaugeVec

	mu sync.Mutex
	// cfg is the configuration served now (Loaded): the health of every
	// backend, those a failed check took out of the listing too.
	cfg    *service.Config
	digest string
	events []Event
}

// New returns the metrics of src; with runtime set, the Go runtime's and
// the process's own metrics are exported too (tests leave them out, they
// change between runs).
func New(src Source, b Build, runtimeMetrics bool) *Metrics {
	m := &Metrics{src: src, reg: prometheus.NewRegistry()}
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xlb_healthcheck_probes_total",
		Help: "Health-check probes by check type (tcp, http, ssl, misc) and result (success, failure).",
	}, []string{"check", "result"})
	m.probeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "xlb_healthcheck_probe_duration_seconds",
		Help:    "How long health-check probes took, by check type.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"check"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xlb_reloads_total",
		Help: "Configuration loads (the start included) by result (success, failure).",
	}, []string{"result"})
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "xlb_reload_last_success_timestamp_seconds",
		Help: "When the configuration served now was loaded, in seconds since the epoch.",
	})
	m.configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xlb_config_info",
		Help: "The configuration served now: its digest (sha256 of the loaded model) as a label, value 1.",
	}, []string{"digest"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xlb_build_info",
		Help: "The xlb binary: version, commit and Go version as labels, value 1.",
	}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(b.Version, b.Commit, runtime.Version()).Set(1)
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	m.reg.MustRegister(m.probes, m.probeTime, m.reloads, m.lastReload, m.configInfo, build)
	if runtimeMetrics {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// ObserveProbe records one health-check probe (healthcheck.Options.OnProbe).
func (m *Metrics) ObserveProbe(p healthcheck.ProbeResult) {
	kind := p.Kind.String()
	result := "failure"
	if p.OK {
		result = "success"
	}
	m.probes.WithLabelValues(kind, result).Inc()
	m.probeTime.WithLabelValues(kind).Observe(p.Duration.Seconds())
}

// Loaded records a configuration load: cfg on success, err on failure.
func (m *Metrics) Loaded(cfg *service.Config, err error) {
	now := time.Now()
	if err != nil {
		m.reloads.WithLabelValues("failure").Inc()
		m.event(Event{At: now, Kind: "reload", Text: "rejected: " + strings.SplitN(err.Error(), "\n", 2)[0]})
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.lastReload.Set(float64(now.UnixNano()) / 1e9)
	d := Digest(cfg)
	m.mu.Lock()
	old := m.digest
	m.digest, m.cfg = d, cfg
	m.mu.Unlock()
	if old != d {
		m.configInfo.Reset()
		m.configInfo.WithLabelValues(d).Set(1)
	}
	m.event(Event{At: now, Kind: "reload", Text: "loaded " + d[:min(len(d), 19)], OK: true})
}

// HealthChanged records a backend's health transition for the status page.
func (m *Metrics) HealthChanged(ev healthcheck.Event) {
	if !ev.Changed {
		return
	}
	state := "down"
	if ev.Up {
		state = "up"
	}
	m.event(Event{At: ev.At, Kind: "health", Text: "service " + ev.Service.String() + ": backend " + ev.Backend.String() + " " + state + ": " + ev.Reason, OK: ev.Up})
}

func (m *Metrics) event(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	if len(m.events) > maxEvents {
		m.events = slices.Delete(m.events, 0, len(m.events)-maxEvents)
	}
}

// config is the configuration last loaded, nil before the first.
func (m *Metrics) config() *service.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// Events returns the last reloads and health transitions, oldest first.
func (m *Metrics) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// Digest identifies a configuration model: "sha256:" and the hex digest
// of its JSON encoding, so that two files that mean the same serve under
// one digest.
func Digest(cfg *service.Config) string {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return "sha256:unknown"
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Gather collects every metric: the registry's and those built from the
// running state (prometheus.Gatherer).
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	own, err := m.collect()
	if err != nil {
		return nil, err
	}
	for _, f := range own {
		mfs = append(mfs, f.dto())
	}
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs, nil
}

// family is a metric family built at scrape time: kept flat rather than
// as protobuf, so that the text encoder (writeText) writes it without an
// allocation per series. At 1,000 services x 10 backends a scrape holds
// about 100,000 series; client_golang's const metrics and expfmt's text
// encoder cost about 1.5 us each, this about a tenth of it.
type family struct {
	name, help string
	counter    bool
	series     []sample
}

// sample is one series: its label pairs (name, value, name, value, ...)
// and its value.
type sample struct {
	labels []string
	value  float64
}

func newFamily(name, help string, counter bool) *family {
	return &family{name: name, help: help, counter: counter}
}

func (f *family) add(labels []string, v float64) {
	f.series = append(f.series, sample{labels, v})
}

// dto is f as client_golang's Gatherer returns it.
func (f *family) dto() *dto.MetricFamily {
	t := dto.MetricType_GAUGE
	if f.counter {
		t = dto.MetricType_COUNTER
	}
	mf := &dto.MetricFamily{Name: proto.String(f.name), Help: proto.String(f.help), Type: t.Enum()}
	for _, s := range f.series {
		m := &dto.Metric{}
		for i := 0; i+1 < len(s.labels); i += 2 {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(s.labels[i]), Value: proto.String(s.labels[i+1])})
		}
		if f.counter {
			m.Counter = &dto.Counter{Value: proto.Float64(s.value)}
		} else {
			m.Gauge = &dto.Gauge{Value: proto.Float64(s.value)}
		}
		mf.Metric = append(mf.Metric, m)
	}
	return mf
}

// labelEscaper escapes a label value for the text format.
var labelEscaper = strings.NewReplacer("\\", `\\`, "\n", `\n`, `"`, `\"`)

// appendText appends f in the Prometheus text format (version 0.0.4), as
// expfmt writes it.
func (f *family) appendText(b []byte) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, strings.NewReplacer("\\", `\\`, "\n", `\n`).Replace(f.help)...)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	if f.counter {
		b = append(b, " counter\n"...)
	} else {
		b = append(b, " gauge\n"...)
	}
	for _, s := range f.series {
		b = append(b, f.name...)
		if len(s.labels) > 0 {
			b = append(b, '{')
			for i := 0; i+1 < len(s.labels); i += 2 {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, s.labels[i]...)
				b = append(b, `="`...)
				v := s.labels[i+1]
				if needsEscape(v) {
					v = labelEscaper.Replace(v)
				}
				b = append(b, v...)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = appendValue(b, s.value)
		b = append(b, '\n')
	}
	return b
}

// needsEscape reports whether a label value holds a character the text
// format escapes; addresses never do, and this is cheaper than asking
// strings.ContainsAny 100,000 times.
func needsEscape(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\\' || c == '\n' || c == '"' {
			return true
		}
	}
	return false
}

// appendValue writes v as expfmt does: integers without an exponent.
func appendValue(b []byte, v float64) []byte {
	if v == float64(int64(v)) && v < 1e15 && v > -1e15 {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// ServiceLabel is a service as the metrics' service label names it:
// "192.0.2.10:80/tcp", as errors and logs name it.
func ServiceLabel(s api.Service) string {
	return hostPort(s.Addr, s.Port) + "/" + strings.ToLower(s.Proto)
}

func hostPort(addr string, port uint16) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	return netip.AddrPortFrom(a, port).String()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// vrrpStates are the states xlb_vrrp_state reports, one series each, so
// that the label set is bounded whatever happens.
var vrrpStates = []string{"INIT", "BACKUP", "MASTER", "RELEASING", "FAULT", "STOP"}

// collect builds the families of the running state. They are built as
// protobuf families directly rather than through const metrics: at 1,000
// services x 10 backends a scrape holds about 100,000 series, and the
// const-metric path costs several times as much.
func (m *Metrics) collect() ([]*family, error) {
	if m.config() == nil {
		return nil, errStarting
	}
	st, err := m.src.State()
	if err != nil {
		return nil, err
	}
	const counter, gauge = true, false
	// Sized up front: at 10,000 backends, growing 13 slices by doubling
	// costs as much as filling them.
	nbe := 0
	for _, s := range st.Services {
		nbe += len(s.Backends)
	}
	newFamily := func(name, help string, counter bool) *family {
		f := newFamily(name, help, counter)
		if strings.HasPrefix(name, "xlb_backend_") {
			f.series = make([]sample, 0, nbe)
		}
		return f
	}
	var (
		svcPkts   = newFamily("xlb_service_packets_total", "Packets the balancer forwarded to a service's backends (client to server; replies bypass it).", counter)
		svcBytes  = newFamily("xlb_service_bytes_total", "Bytes the balancer forwarded to a service's backends.", counter)
		svcFlows  = newFamily("xlb_service_flows_total", "New flows the balancer scheduled for a service.", counter)
		svcInst   = newFamily("xlb_service_installed", "Whether the service has a Maglev table in the data path (1) or its traffic goes to the local stack (0).", gauge)
		bePkts    = newFamily("xlb_backend_packets_total", "Packets the balancer forwarded to a backend of a service.", counter)
		beBytes   = newFamily("xlb_backend_bytes_total", "Bytes the balancer forwarded to a backend of a service.", counter)
		beFlows   = newFamily("xlb_backend_flows_total", "New flows the balancer scheduled to a backend of a service.", counter)
		beActive  = newFamily("xlb_backend_active_flows", "Established flows of a backend (IPVS ActiveConn).", gauge)
		beInact   = newFamily("xlb_backend_inactive_flows", "Flows of a backend not established or closing (IPVS InActConn).", gauge)
		beWeight  = newFamily("xlb_backend_weight", "Weight the data path serves a backend with now (0 while drained or down with inhibit_on_failure).", gauge)
		beCfgW    = newFamily("xlb_backend_configured_weight", "Weight the configuration gives a backend.", gauge)
		beUp      = newFamily("xlb_backend_up", "Whether a backend's health checks pass (1) or not (0).", gauge)
		beDrained = newFamily("xlb_backend_drained", "Whether an operator drained the backend at runtime (xlb drain).", gauge)
		flowsUsed = newFamily("xlb_flow_table_entries", "Entries in the flow table, expired ones included.", gauge)
		flowsCap  = newFamily("xlb_flow_table_capacity", "Entries the flow table holds at most; beyond it the least recently used flow is evicted.", gauge)
		passed    = newFamily("xlb_datapath_passed_packets_total", "Packets the XDP program passed to the kernel instead of forwarding, by reason.", counter)
		flowEv    = newFamily("xlb_datapath_flow_events_total", "Flow-table events of the XDP program: new (inserted), rehash (a flow whose backend was removed, scheduled again), expired, promoted, icmp_relayed (an ICMP error sent to the real server of the flow it quotes), too_big_answered (a packet too big for its tunnel, answered with an ICMP error).", counter)
		vState    = newFamily("xlb_vrrp_state", "VRRP instance state: 1 for the state it is in, 0 for the others.", gauge)
		vPrio     = newFamily("xlb_vrrp_priority", "Effective VRRP priority, tracked scripts and interfaces applied.", gauge)
		vBase     = newFamily("xlb_vrrp_configured_priority", "Configured VRRP priority.", gauge)
		vSent     = newFamily("xlb_vrrp_adverts_sent_total", "VRRP advertisements sent.", counter)
		vRecv     = newFamily("xlb_vrrp_adverts_received_total", "VRRP advertisements received.", counter)
		vDrop     = newFamily("xlb_vrrp_adverts_dropped_total", "VRRP advertisements received and dropped (checksum, TTL, authentication, addresses).", counter)
	)

	type beKey struct {
		svc service.ServiceKey
		be  netip.AddrPort
	}
	for _, s := range st.Services {
		svc := ServiceLabel(s)
		sl := []string{"service", svc}
		svcPkts.add(sl, float64(s.Stats.InPkts))
		svcBytes.add(sl, float64(s.Stats.InBytes))
		svcFlows.add(sl, float64(s.Stats.Conns))
		svcInst.add(sl, b2f(s.Installed))
		for _, b := range s.Backends {
			// One label slice serves every family of the backend: the
			// encoder only reads it.
			bl := []string{"service", svc, "backend", hostPort(b.Addr, b.Port)}
			bePkts.add(bl, float64(b.Stats.InPkts))
			beBytes.add(bl, float64(b.Stats.InBytes))
			beFlows.add(bl, float64(b.Stats.Conns))
			beActive.add(bl, float64(b.ActiveConn))
			beInact.add(bl, float64(b.InActConn))
			beWeight.add(bl, float64(b.Weight))
			beCfgW.add(bl, float64(b.ConfigWeight))
			beDrained.add(bl, b2f(b.Override == "drained"))
		}
	}
	// Health covers every configured backend, those a failed check took
	// out of the listing too.
	seen := map[beKey]bool{}
	if cfg := m.config(); cfg != nil && m.src.Health != nil {
		for _, s := range cfg.Services {
			svc := s.Key().String()
			for _, b := range s.Backends {
				k := beKey{s.Key(), b.AddrPort()}
				if seen[k] {
					continue
				}
				seen[k] = true
				beUp.add([]string{"service", svc, "backend", b.AddrPort().String()}, b2f(m.src.Health.Up(s.Key(), b.AddrPort())))
			}
		}
	}
	flowsUsed.add(nil, float64(st.FlowEntries))
	if m.src.Datapath != nil {
		flowsCap.add(nil, float64(m.src.Datapath.FlowTableCapacity()))
		cs, err := m.src.Datapath.Counters()
		if err != nil {
			return nil, err
		}
		for c := range datapath.Counter(len(cs)) {
			name := c.String()
			switch {
			case strings.HasPrefix(name, "pass_"):
				passed.add([]string{"reason", strings.TrimPrefix(name, "pass_")}, float64(cs[c]))
			case strings.HasPrefix(name, "flow_"):
				flowEv.add([]string{"event", strings.TrimPrefix(name, "flow_")}, float64(cs[c]))
			}
		}
	}
	for _, v := range st.VRRP {
		for _, s := range vrrpStates {
			vState.add([]string{"instance", v.Name, "state", s}, b2f(v.State == s))
		}
		l := []string{"instance", v.Name}
		vPrio.add(l, float64(v.Priority))
		vBase.add(l, float64(v.BasePriority))
		vSent.add(l, float64(v.Sent))
		vRecv.add(l, float64(v.Received))
		vDrop.add(l, float64(v.Dropped))
	}
	var out []*family
	for _, f := range []*family{svcPkts, svcBytes, svcFlows, svcInst, bePkts, beBytes, beFlows, beActive, beInact,
		beWeight, beCfgW, beUp, beDrained, flowsUsed, flowsCap, passed, flowEv, vState, vPrio, vBase, vSent, vRecv, vDrop} {
		if len(f.series) > 0 {
			out = append(out, f)
		}
	}
	return out, nil
}
