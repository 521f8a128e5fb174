package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
)

var keepalivedFiles = []string{
	"keepalived/testdata/good/seed-blog.conf",
	"keepalived/testdata/good/full.conf",
	"keepalived/testdata/good/includes/keepalived.conf",
	"keepalived/testdata/good/defaults.conf",
	"keepalived/testdata/good/global-defaults.conf",
	"keepalived/testdata/good/advert-int.conf",
	"keepalived/testdata/good/tun.conf",
}

var modelOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// TestRoundTrip: every good keepalived.conf, written as YAML, reads back
// as the same model (positions aside), and the YAML is a golden file.
func TestRoundTrip(t *testing.T) {
	for _, path := range keepalivedFiles {
		t.Run(path, func(t *testing.T) {
			want, _, err := Load(path, FormatAuto)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			out, err := MarshalYAML(want)
			if err != nil {
				t.Fatalf("MarshalYAML: %v", err)
			}
			goldenPath := filepath.Join("testdata", strings.ReplaceAll(strings.TrimPrefix(path, "keepalived/testdata/good/"), "/", "_")+".yaml")
			testutil.Golden(t, goldenPath, out)
			got, err := ParseYAML("out.yaml", out)
			if err != nil {
				t.Fatalf("ParseYAML of MarshalYAML output: %v\n%s", err, out)
			}
			if diff := cmp.Diff(want, got, modelOpts, cmpopts.IgnoreTypes(service.Pos{}, service.Keywords{})); diff != "" {
				t.Errorf("round trip changed the model (-keepalived +yaml):\n%s", diff)
			}
		})
	}
}

func TestParseYAMLErrors(t *testing.T) {
	const svc = "services:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown field", svc + "    backend:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:5: unknown field backend in service",
		}},
		{"unknown nested field", svc + "    backends:\n      - address: 198.51.100.7\n        wieght: 2\n", []string{
			"c.yaml:7: unknown field wieght in backend",
		}},
		{"bad values, all reported", svc + "    delay_loop: 3\n    backends:\n      - address: 198.51.100.300\n        weight: x\n", []string{
			`c.yaml:5: "3" is not a duration (write e.g. 3s or 500ms)`,
			`c.yaml:7: "198.51.100.300" is not an IP address`,
			"c.yaml:8: cannot unmarshal !!str `x` into int",
		}},
		{"negative weight", svc + "    backends:\n      - address: 198.51.100.7\n        weight: -3\n", []string{
			"c.yaml:7: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: weight -3 is negative", // the weight's own line
		}},
		{"missing protocol", "services:\n  - vip: 192.0.2.10\n    port: 80\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:2: service 192.0.2.10: protocol is missing (tcp or udp)",
		}},
		{"bad check type", svc + "    backends:\n      - address: 198.51.100.7\n        checks:\n          - type: smtp\n", []string{
			`c.yaml:8: unknown check type "smtp" (want tcp, http, ssl or misc)`,
		}},
		{"syntax", "services:\n  - vip: [\n", []string{
			"c.yaml:2: did not find expected node content",
		}},
		{"two documents", "services: []\n---\nservices: []\n", []string{
			"c.yaml: more than one YAML document; xlb reads one",
		}},
		{"negative rise", svc + "    backends:\n      - address: 198.51.100.7\n        checks:\n          - type: tcp\n            rise: -2\n", []string{
			"c.yaml:8: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: tcp check: rise -2 is negative",
		}},
		{"flap damping without a hold-down", "global:\n  flap_damping:\n    changes: 4\n    window: 60s\n", []string{
			"c.yaml:4: flap_damping: changes (4), window (1m0s) and hold_down (0s) must all be positive",
		}},
		{"flap damping without changes", "global:\n  flap_damping:\n    window: 60s\n    hold_down: 5m\n", []string{
			"c.yaml:4: flap_damping: changes (0), window (1m0s) and hold_down (5m0s) must all be positive",
		}},
		{"flap damping, unknown field", "global:\n  flap_damping:\n    changes: 4\n    windows: 60s\n", []string{
			"c.yaml:4: unknown field windows in flap_damping",
		}},
		{"zero timeout", "global:\n  timeouts:\n    udp: 0s\n", []string{
			"c.yaml:3: timeouts: 0s is not positive",
		}},
		{"timeout beyond a year", "global:\n  timeouts:\n    tcp: 9000h\n", []string{
			"c.yaml:3: timeouts: tcp 9000h0m0s is out of range (0, 8760h0m0s]",
		}},
		{"vlan above 4094", svc + "    vlan: 4095\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:5: service 192.0.2.10:80/tcp: vlan 4095 is out of range [1, 4094] (0 or none: any)",
		}},
		{"negative vlan", svc + "    backends:\n      - address: 198.51.100.7\n    vlan: -1\n", []string{
			"c.yaml:7: service 192.0.2.10:80/tcp: vlan -1 is out of range [1, 4094] (0 or none: any)",
		}},
		{"vlan not a number", svc + "    vlan: ten\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:5: cannot unmarshal !!str `ten` into int",
		}},
		{"timeouts, unknown field", "global:\n  timeouts:\n    tcpfin: 60s\n", []string{
			"c.yaml:3: unknown field tcpfin in timeouts",
		}},
		{"forward method nat", svc + "    forward:\n      method: nat\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:6: method nat is not supported by xlb: the balancer never sees the replies NAT must rewrite; use route or tunnel",
		}},
		{"forward method unknown", svc + "    backends:\n      - address: 198.51.100.7\n        forward: {method: dsr}\n", []string{
			`c.yaml:7: "dsr" is not a forwarding method (route or tunnel)`,
		}},
		{"forward encap gre", svc + "    forward:\n      method: tunnel\n      encap: gre\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:7: encap gre is not supported by xlb, which tunnels with ipip or gue",
		}},
		{"forward encap unknown", svc + "    forward: {method: tunnel, encap: vxlan}\n    backends:\n      - address: 198.51.100.7\n", []string{
			`c.yaml:5: "vxlan" is not a tunnel encapsulation (ipip or gue)`,
		}},
		{"forward unknown field", svc + "    forward:\n      method: tunnel\n      remcsum: true\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:7: unknown field remcsum in forward",
		}},
		{"forward port range", svc + "    forward:\n      method: tunnel\n      encap: gue\n      port: 70000\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:8: service 192.0.2.10: forward: port 70000 is outside 1..65535",
		}},
		{"forward without method", svc + "    backends:\n      - address: 198.51.100.7\n        forward:\n          encap: gue\n", []string{
			"c.yaml:8: service 192.0.2.10: backend 198.51.100.7: forward: method is missing (route or tunnel)",
		}},
		{"forward empty", svc + "    backends:\n      - address: 198.51.100.7\n        forward: {}\n", []string{
			"c.yaml:6: service 192.0.2.10: backend 198.51.100.7: forward: method is missing (route or tunnel)",
		}},
		{"gue without port, at the service's forward", svc + "    forward:\n      method: tunnel\n      encap: gue\n    backends:\n      - address: 198.51.100.7\n      - address: 198.51.100.8\n", []string{
			"c.yaml:6: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: gue tunnel needs a port",
			"c.yaml:6: service 192.0.2.10:80/tcp: backend 198.51.100.8:80: gue tunnel needs a port",
		}},
		{"route with tunnel settings", svc + "    backends:\n      - address: 198.51.100.7\n        forward: {method: route, encap: gue, port: 6080}\n", []string{
			"c.yaml:7: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: direct routing takes no tunnel settings",
		}},
		{"ipip with a checksum, on the sorry server", svc + "    sorry_server:\n      address: 198.51.100.9\n      forward: {method: tunnel, csum: true}\n    backends:\n      - address: 198.51.100.7\n", []string{
			"c.yaml:7: service 192.0.2.10:80/tcp: sorry server: ipip tunnel takes no port or checksum",
		}},
		{"tunnel to another family", svc + "    forward: {method: tunnel}\n    backends:\n      - address: 2001:db8::7\n", []string{
			"c.yaml:7: service 192.0.2.10:80/tcp: backend [2001:db8::7]:80: address family differs from vip 192.0.2.10; xlb tunnels IPv4 in IPv4 and IPv6 in IPv6 only",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantYAMLErrors(t, tt.doc, tt.want) })
	}
}

// TestYAMLDefaults: omitted values get keepalived's defaults, except the
// scheduler, which defaults to weighted Maglev.
func TestYAMLDefaults(t *testing.T) {
	doc := "services:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    backends:\n      - address: 198.51.100.7\n        checks:\n          - type: http\n            urls:\n              - path: /\n"
	cfg, err := ParseYAML("d.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services[0]
	want := service.Service{
		VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP, Scheduler: "maglev",
		DelayLoop: service.DefaultDelayLoop,
		Backends: []service.Backend{{
			Addr: netip.MustParseAddr("198.51.100.7"), Port: 80, Weight: 1,
			Checks: []service.Check{{
				Kind: service.CheckHTTP, ConnectTimeout: service.DefaultConnectTimeout, Retry: 1,
				DelayBeforeRetry: service.DefaultHTTPDelayBeforeRetry, Warmup: service.DefaultDelayLoop,
				DelayLoop: service.DefaultDelayLoop, URLs: []service.URL{{Path: "/"}},
			}},
		}},
	}
	if diff := cmp.Diff(want, s, modelOpts, cmpopts.IgnoreTypes(service.Pos{}, service.Keywords{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestVLAN: a service's vlan (an xlb extension) reads from YAML, where
// it was written is kept for errors, and it is written back.
func TestVLAN(t *testing.T) {
	doc := "services:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    vlan: 100\n    backends:\n      - address: 198.51.100.7\n" +
		"  - vip: 192.0.2.11\n    port: 80\n    protocol: tcp\n    backends:\n      - address: 198.51.100.7\n"
	cfg, err := ParseYAML("v.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := []int{cfg.Services[0].VLAN, cfg.Services[1].VLAN}; !cmp.Equal(got, []int{100, 0}) {
		t.Errorf("vlans %v, want [100 0]", got)
	}
	if got := cfg.Services[0].Keywords.At(service.Pos{}, "vlan"); got.Line != 5 {
		t.Errorf("vlan written at line %d, want 5", got.Line)
	}
	out, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "vlan:"); n != 1 {
		t.Errorf("MarshalYAML wrote %d vlan keys, want 1 (none for any):\n%s", n, out)
	}
	back, err := ParseYAML("out.yaml", out)
	if err != nil {
		t.Fatalf("ParseYAML of MarshalYAML output: %v\n%s", err, out)
	}
	if diff := cmp.Diff(cfg, back, modelOpts, cmpopts.IgnoreTypes(service.Pos{}, service.Keywords{})); diff != "" {
		t.Errorf("round trip changed the model (-before +after):\n%s", diff)
	}
}

// TestCheckRise: xlb's rise (keepalived has none) reads from a YAML check
// and is written back.
func TestCheckRise(t *testing.T) {
	doc := "services:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    backends:\n      - address: 198.51.100.7\n        checks:\n          - type: tcp\n            rise: 3\n"
	cfg, err := ParseYAML("r.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Services[0].Backends[0].Checks[0].Rise; got != 3 {
		t.Errorf("rise %d, want 3", got)
	}
	out, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseYAML("r.yaml", out)
	if err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
	if got := back.Services[0].Backends[0].Checks[0].Rise; got != 3 {
		t.Errorf("rise %d after the round trip, want 3:\n%s", got, out)
	}
}

// TestFlapDamping: xlb's own knob (keepalived has none) reads from the
// YAML global block and survives the round trip.
func TestFlapDamping(t *testing.T) {
	doc := "global:\n  router_id: lb1\n  flap_damping:\n    changes: 4\n    window: 1m0s\n    hold_down: 5m0s\n"
	cfg, err := ParseYAML("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := service.FlapDamping{Changes: 4, Window: time.Minute, HoldDown: 5 * time.Minute, Source: service.Pos{File: "f.yaml", Line: 6}}
	if diff := cmp.Diff(want, cfg.Global.FlapDamping); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	out, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != doc {
		t.Errorf("written back as:\n%s\nwant:\n%s", out, doc)
	}
}

// TestTimeouts: the flow lifetimes (keepalived.conf has no keyword for
// them) read from the YAML global block, unset ones left to the default,
// and survive the round trip.
func TestTimeouts(t *testing.T) {
	doc := "global:\n  timeouts:\n    tcp: 1h0m0s\n    udp: 30s\n    close: 5s\n"
	cfg, err := ParseYAML("t.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := service.Timeouts{TCP: time.Hour, UDP: 30 * time.Second, Close: 5 * time.Second, Source: service.Pos{File: "t.yaml", Line: 5}}
	if diff := cmp.Diff(want, cfg.Global.Timeouts); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	out, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != doc {
		t.Errorf("written back as:\n%s\nwant:\n%s", out, doc)
	}
}

func TestLoadFormat(t *testing.T) {
	dir := t.TempDir()
	yamlDoc := "services:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    backends:\n      - address: 198.51.100.7\n"
	for name, data := range map[string]string{"a.yaml": yamlDoc, "a.yml": yamlDoc, "yaml.conf": yamlDoc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		file, format string
		wantErr      string
		wantWarn     string
	}{
		{"a.yaml", FormatAuto, "", ""},
		{"a.yml", "", "", ""},
		{"yaml.conf", FormatYAML, "", ""},
		// Read as keepalived.conf: nothing it knows, so all warnings.
		{"yaml.conf", FormatAuto, "", "unknown keyword services: in the top level (ignored)"},
		{"a.yaml", "toml", `unknown configuration format "toml"`, ""},
	}
	for _, tt := range tests {
		_, warns, err := Load(filepath.Join(dir, tt.file), tt.format)
		if tt.wantWarn != "" && (len(warns) == 0 || !strings.Contains(warns[0].Msg, tt.wantWarn)) {
			t.Errorf("Load(%s, %q) warnings %v, want %q first", tt.file, tt.format, warns, tt.wantWarn)
		}
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Load(%s, %q): %v", tt.file, tt.format, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Load(%s, %q) = %v, want error containing %q", tt.file, tt.format, err, tt.wantErr)
		}
	}
}

// FuzzYAML: no input may panic or hang the reader, and what it accepts
// must validate and survive a round trip.
func FuzzYAML(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("services:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    backends:\n      - address: 198.51.100.7\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseYAML("f.yaml", data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a configuration that does not validate: %v", err)
		}
		out, err := MarshalYAML(cfg)
		if err != nil {
			t.Fatalf("MarshalYAML: %v", err)
		}
		again, err := ParseYAML("f.yaml", out)
		if err != nil {
			t.Fatalf("reading back MarshalYAML output: %v\n%s", err, out)
		}
		if diff := cmp.Diff(cfg, again, modelOpts, cmpopts.IgnoreTypes(service.Pos{}, service.Keywords{})); diff != "" {
			t.Fatalf("round trip changed the model:\n%s", diff)
		}
	})
}

// TestDocExample: the example in docs/config.md loads and serves exactly
// what the seed's keepalived.conf serves.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/config.md has no ```yaml block")
	}
	got, err := ParseYAML("docs/config.md", []byte(example))
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	seed, _, err := Load("keepalived/testdata/good/seed-blog.conf", FormatKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(seed.Services, got.Services, modelOpts, cmpopts.IgnoreTypes(service.Pos{}, service.Keywords{})); diff != "" {
		t.Errorf("example services differ from the seed's (-seed +example):\n%s", diff)
	}
}

// wantYAMLErrors parses doc as c.yaml and wants exactly the errors want.
func wantYAMLErrors(t *testing.T, doc string, want []string) {
	t.Helper()
	cfg, err := ParseYAML("c.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("accepted: %+v", cfg)
	}
	var got []string
	for _, e := range service.Errors(err) {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// TestYAMLForward: a service's forward is the default of its backends and
// sorry server, which may set their own; the written YAML reads back the
// same.
func TestYAMLForward(t *testing.T) {
	const doc = `services:
  - vip: 192.0.2.10
    port: 80
    protocol: tcp
    forward: {method: tunnel, encap: gue, port: 6080, csum: true}
    sorry_server:
      address: 203.0.113.30
    backends:
      - address: 203.0.113.20
      - address: 198.51.100.11
        forward: {method: route}
      - address: 203.0.113.21
        forward: {method: tunnel}
`
	cfg, err := ParseYAML("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	gue := service.Forward{Method: service.Tunnel, Encap: service.GUE, Port: 6080, Csum: true}
	s := cfg.Services[0]
	got := []service.Forward{s.SorryServer.Forward}
	for _, b := range s.Backends {
		got = append(got, b.Forward)
	}
	want := []service.Forward{gue, gue, {}, {Method: service.Tunnel}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sorry server, backends (-want +got):\n%s", diff)
	}
	out, err := MarshalYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseYAML("out.yaml", out)
	if err != nil {
		t.Fatalf("reading back: %v\n%s", err, out)
	}
	if diff := cmp.Diff(cfg, again, modelOpts, cmpopts.IgnoreTypes(service.Pos{}, service.Keywords{})); diff != "" {
		t.Errorf("round trip changed the model:\n%s\n%s", diff, out)
	}
}
