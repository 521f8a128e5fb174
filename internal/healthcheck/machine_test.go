package healthcheck

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/service"
)

// after is what a machine did after one probe.
type after struct {
	Delay time.Duration
	Up    bool
	URL   int // index of the URL fetched next (HTTP)
}

func s(n int) time.Duration { return time.Duration(n) * time.Second }

// feed plays outcomes ('+' pass, '-' fail) into m.
func feed(m machine, outcomes string) []after {
	var out []after
	for _, o := range outcomes {
		st := m.observe(o == '+')
		out = append(out, after{Delay: st.delay, Up: m.up, URL: m.url})
	}
	return out
}

func TestMachine(t *testing.T) {
	tcp := service.Check{Kind: service.CheckTCP, DelayLoop: s(10), DelayBeforeRetry: s(2), Retry: 1}
	misc := service.Check{Kind: service.CheckMisc, DelayLoop: s(10), DelayBeforeRetry: s(3)}
	http2 := service.Check{Kind: service.CheckHTTP, DelayLoop: s(10), DelayBeforeRetry: s(3), Retry: 1,
		URLs: []service.URL{{Path: "/a"}, {Path: "/b"}}}
	with := func(c service.Check, f func(*service.Check)) service.Check { f(&c); return c }
	const u, d = true, false

	tests := []struct {
		name     string
		check    service.Check
		startup  bool
		outcomes string
		want     []after
	}{
		{
			name:  "tcp: retry 1 takes two failures, spaced by delay_before_retry; down keeps cycling retries; one success is up",
			check: tcp, outcomes: "+-----+",
			want: []after{{s(10), u, 0}, {s(2), u, 0}, {s(10), d, 0}, {s(2), d, 0}, {s(10), d, 0}, {s(2), d, 0}, {s(10), u, 0}},
		},
		{
			name:  "tcp: retry 0 fails at once",
			check: with(tcp, func(c *service.Check) { c.Retry = 0 }), outcomes: "+-+",
			want: []after{{s(10), u, 0}, {s(10), d, 0}, {s(10), u, 0}},
		},
		{
			name:  "tcp: retry 3 takes four failures",
			check: with(tcp, func(c *service.Check) { c.Retry = 3 }), outcomes: "+----",
			want: []after{{s(10), u, 0}, {s(2), u, 0}, {s(2), u, 0}, {s(2), u, 0}, {s(10), d, 0}},
		},
		{
			name:  "tcp: delay_before_retry 5 spaces the retry",
			check: with(tcp, func(c *service.Check) { c.DelayBeforeRetry = s(5) }), outcomes: "+--",
			want: []after{{s(10), u, 0}, {s(5), u, 0}, {s(10), d, 0}},
		},
		{
			name:  "tcp: delay_loop 3 is the interval",
			check: with(tcp, func(c *service.Check) { c.DelayLoop = s(3) }), outcomes: "++",
			want: []after{{s(3), u, 0}, {s(3), u, 0}},
		},
		{
			name:  "tcp: a success between failures restarts the count",
			check: tcp, outcomes: "-+-+",
			want: []after{{s(2), u, 0}, {s(10), u, 0}, {s(2), u, 0}, {s(10), u, 0}},
		},
		{
			name:  "tcp: rise 3 takes three successes in a row to come back",
			check: with(tcp, func(c *service.Check) { c.Rise = 3 }), outcomes: "+--+++",
			want: []after{{s(10), u, 0}, {s(2), u, 0}, {s(10), d, 0}, {s(10), d, 0}, {s(10), d, 0}, {s(10), u, 0}},
		},
		{
			name:  "tcp: rise 3, a failure restarts the count",
			check: with(tcp, func(c *service.Check) { c.Rise = 3 }), outcomes: "--++-+++",
			want: []after{{s(2), u, 0}, {s(10), d, 0}, {s(10), d, 0}, {s(10), d, 0}, {s(2), d, 0}, {s(10), d, 0}, {s(10), d, 0}, {s(10), u, 0}},
		},
		{
			name:  "tcp: rise does not delay going down",
			check: with(tcp, func(c *service.Check) { c.Rise = 3 }), outcomes: "+--",
			want: []after{{s(10), u, 0}, {s(2), u, 0}, {s(10), d, 0}},
		},
		{
			name:  "misc: rise 2",
			check: with(misc, func(c *service.Check) { c.Rise = 2 }), outcomes: "-++",
			want: []after{{s(10), d, 0}, {s(10), d, 0}, {s(10), u, 0}},
		},
		{
			name:  "tcp: at startup the first failure counts at once",
			check: tcp, startup: true, outcomes: "-",
			want: []after{{s(10), d, 0}},
		},
		{
			name:  "tcp: after a first success at startup, retries apply",
			check: tcp, startup: true, outcomes: "+--",
			want: []after{{s(10), u, 0}, {s(2), u, 0}, {s(10), d, 0}},
		},
		{
			name:  "misc: retry 0 (its default) fails at once; down does not retry",
			check: misc, outcomes: "+--+",
			want: []after{{s(10), u, 0}, {s(10), d, 0}, {s(10), d, 0}, {s(10), u, 0}},
		},
		{
			name:  "misc: retry 2 takes three failures",
			check: with(misc, func(c *service.Check) { c.Retry = 2 }), outcomes: "+----",
			want: []after{{s(10), u, 0}, {s(3), u, 0}, {s(3), u, 0}, {s(10), d, 0}, {s(10), d, 0}},
		},
		{
			name:  "misc: at startup the first failure counts at once",
			check: with(misc, func(c *service.Check) { c.Retry = 2 }), startup: true, outcomes: "-",
			want: []after{{s(10), d, 0}},
		},
		{
			name:  "http: one URL per probe; retry on the same URL; down polls it every max(delay_loop, delay_before_retry); then walks every URL",
			check: http2, outcomes: "++---+++",
			want: []after{
				{s(10), u, 1}, {s(10), u, 0}, // round over /a and /b
				{s(3), u, 0}, {s(10), d, 0}, {s(10), d, 0}, // /a fails twice: down; still failing
				{s(10), d, 0}, {s(10), d, 1}, {s(10), u, 0}, // /a answers; walk /a, /b: up
			},
		},
		{
			name:  "http: a failure during the recovery walk retries that URL after delay_before_retry",
			check: http2, outcomes: "---++-+",
			want: []after{
				{s(3), u, 0}, {s(10), d, 0}, {s(10), d, 0},
				{s(10), d, 0}, {s(10), d, 1}, {s(3), d, 1}, {s(10), u, 0},
			},
		},
		{
			name:  "http: delay_before_retry above delay_loop spaces the polls of a down check",
			check: with(http2, func(c *service.Check) { c.DelayLoop = s(2); c.DelayBeforeRetry = s(5) }), outcomes: "---",
			want: []after{{s(5), u, 0}, {s(5), d, 0}, {s(5), d, 0}},
		},
		{
			name:  "http: no retries during the first round at startup",
			check: http2, startup: true, outcomes: "+-",
			want: []after{{s(10), u, 1}, {s(10), d, 1}},
		},
		{
			name:  "ssl: same rules as http",
			check: with(http2, func(c *service.Check) { c.Kind = service.CheckSSL; c.Retry = 0 }), outcomes: "+-",
			want: []after{{s(10), u, 1}, {s(10), d, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := feed(newMachine(tt.check, tt.startup), tt.outcomes)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("after %q (-want +got):\n%s", tt.outcomes, diff)
			}
		})
	}
}

func TestMachineFromStart(t *testing.T) {
	for _, tc := range []struct {
		kind service.CheckKind
		want bool
	}{{service.CheckTCP, false}, {service.CheckHTTP, false}, {service.CheckSSL, false}, {service.CheckMisc, true}} {
		m := newMachine(service.Check{Kind: tc.kind, DelayLoop: s(1), URLs: []service.URL{{Path: "/"}}}, false)
		if got := m.observe(true).fromStart; got != tc.want {
			t.Errorf("%s: fromStart = %v, want %v", tc.kind, got, tc.want)
		}
	}
}

func TestResumedKeepsVerdict(t *testing.T) {
	c := service.Check{Kind: service.CheckTCP, DelayLoop: s(10), DelayBeforeRetry: s(2), Retry: 1}
	down := resumed(c, false)
	if got := feed(down, "-+"); !cmp.Equal(got, []after{{s(2), false, 0}, {s(10), true, 0}}) {
		t.Errorf("resumed down check: %v", got)
	}
	up := resumed(c, true)
	if got := feed(up, "--"); !cmp.Equal(got, []after{{s(2), true, 0}, {s(10), false, 0}}) {
		t.Errorf("resumed up check: %v (a resumed check is not at startup: retries apply)", got)
	}
}

func TestProbeCheckNarrowsURLs(t *testing.T) {
	c := service.Check{Kind: service.CheckHTTP, DelayLoop: s(1), URLs: []service.URL{{Path: "/a"}, {Path: "/b"}}}
	m := newMachine(c, false)
	var paths []string
	for range 3 {
		pc := m.probeCheck(c)
		if len(pc.URLs) != 1 {
			t.Fatalf("probe check has %d URLs, want 1", len(pc.URLs))
		}
		paths = append(paths, pc.URLs[0].Path)
		m.observe(true)
	}
	if diff := cmp.Diff([]string{"/a", "/b", "/a"}, paths); diff != "" {
		t.Errorf("URLs fetched (-want +got):\n%s", diff)
	}
	tcp := service.Check{Kind: service.CheckTCP}
	if diff := cmp.Diff(tcp, func() service.Check { m := newMachine(tcp, false); return m.probeCheck(tcp) }(), cmpAddr); diff != "" {
		t.Errorf("tcp check changed:\n%s", diff)
	}
}
