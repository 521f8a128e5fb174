package keepalived

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
)

// goodFiles are keepalived.conf files as users write them; each must load
// and match its golden model.
var goodFiles = []string{
	"testdata/good/seed-blog.conf",
	"testdata/good/full.conf",
	"testdata/good/includes/keepalived.conf",
	"testdata/good/defaults.conf",
	"testdata/good/global-defaults.conf",
	"testdata/good/advert-int.conf",
	"testdata/good/tun.conf",
}

type golden struct {
	Warnings []string
	Config   *service.Config
}

func TestGood(t *testing.T) {
	for _, path := range goodFiles {
		t.Run(path, func(t *testing.T) {
			cfg, warns, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			g := golden{Config: cfg}
			for _, w := range warns {
				g.Warnings = append(g.Warnings, w.String())
			}
			got, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			goldenPath := filepath.Join("testdata/golden", strings.ReplaceAll(strings.TrimPrefix(path, "testdata/good/"), "/", "_")+".json")
			testutil.Golden(t, goldenPath, got)
		})
	}
}

func TestBad(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"negative-weight.conf", []string{
			"negative-weight.conf:6: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: weight -3 is negative",
		}},
		{"unknown-block.conf", []string{
			"unknown-block.conf:5: unknown block real_sever in virtual_server",
		}},
		{"missing-brace.conf", []string{
			"missing-brace.conf:1: virtual_server block is not closed: missing } before the end of the file",
		}},
		{"extra-brace.conf", []string{
			"extra-brace.conf:8: unexpected }: no block is open",
		}},
		{"bad-ip.conf", []string{
			`bad-ip.conf:4: real_server: "198.51.100.300" is not an IP address`,
			`bad-ip.conf:8: virtual_server: "192.0.2.1O" is not an IP address`,
		}},
		{"port-range.conf", []string{
			"port-range.conf:1: virtual_server 192.0.2.10 port 70000 is outside 0..65535",
			"port-range.conf:9: connect_port 65536 is outside 0..65535",
		}},
		{"duplicate-real-server.conf", []string{
			"duplicate-real-server.conf:7: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: duplicate of the backend at testdata/bad/duplicate-real-server.conf:4",
		}},
		{"nat.conf", []string{
			"nat.conf:2: lb_kind NAT is not supported by xlb: the balancer never sees the replies NAT must rewrite; use DR or TUN with the VIP on the real servers' loopback",
			"nat.conf:7: no lb_kind set: keepalived defaults to NAT, which xlb does not serve; add `lb_kind DR` (or TUN)",
		}},
		{"tun.conf", []string{
			"tun.conf:3: lvs_method: tunnel type gre is not supported by xlb, which tunnels with ipip or gue",
			"tun.conf:5: lvs_method: remcsum (remote checksum offload) is not implemented by xlb; use csum or nocsum",
			"tun.conf:8: lvs_method: type gue needs port NUM",
			"tun.conf:11: lvs_method: port 6080 is only for type gue",
			"tun.conf:14: lvs_method: type ipip takes no checksum option",
			"tun.conf:17: lvs_method: gue port 0 is outside 1..65535",
			"tun.conf:20: lvs_method: gue port 65536 is outside 1..65535",
			`tun.conf:23: lvs_method: unknown tunnel type "vxlan" (ipip, gue or gre)`,
			"tun.conf:26: lvs_method: type needs a tunnel type (ipip or gue)",
			`tun.conf:29: lvs_method: unknown tunnel option "frobnicate" (type, port, nocsum, csum or remcsum)`,
			"tun.conf:32: lvs_method NAT is not supported by xlb: the balancer never sees the replies NAT must rewrite; use DR or TUN with the VIP on the real servers' loopback",
			`tun.conf:35: lvs_method "Tunnel" is not a forwarding method (NAT, DR or TUN)`,
			"tun.conf:41: sorry_server_lvs_method comes before sorry_server, where keepalived ignores it; write it after sorry_server",
		}},
		{"tun-family.conf", []string{
			"tun-family.conf:5: service 192.0.2.11:80/tcp: backend [2001:db8::7]:80: address family differs from vip 192.0.2.11; xlb tunnels IPv4 in IPv4 and IPv6 in IPv6 only",
			"tun-family.conf:7: service 192.0.2.11:80/tcp: backend 203.0.113.20:8080: port 8080 differs from the service port 80; a tunnel cannot rewrite ports",
		}},
		{"loop/a.conf", []string{
			"loop/b.conf:7: include loop: testdata/bad/loop/a.conf includes testdata/bad/loop/b.conf includes testdata/bad/loop/a.conf",
		}},
		{"unsupported.conf", []string{
			"unsupported.conf:1: virtual_server fwmark is not supported by xlb; use virtual_server ADDRESS PORT (port 0 for all ports)",
			"unsupported.conf:4: virtual_server_group is not supported by xlb; write one virtual_server per address",
			"unsupported.conf:9: protocol SCTP is not supported by xlb; use TCP or UDP",
			`unsupported.conf:10: unknown scheduler "xyz" (want maglev, mh, sh, rr, wrr, lc, wlc, lblc, lblcr, dh, sed, nq, fo, ovf or twos)`,
			"unsupported.conf:12: SMTP_CHECK is not supported by xlb; use TCP_CHECK, HTTP_GET, SSL_GET or MISC_CHECK",
			"unsupported.conf:14: DNS_CHECK is not supported by xlb; use TCP_CHECK, HTTP_GET, SSL_GET or MISC_CHECK",
		}},
		{"missing-include.conf", []string{
			"missing-include.conf:1: include does-not-exist.conf: no such file",
		}},
		{"port-mismatch.conf", []string{
			"port-mismatch.conf:4: service 192.0.2.10:80/tcp: backend 198.51.100.7:8080: port 8080 differs from the service port 80; direct routing cannot rewrite ports",
			"port-mismatch.conf:6: service 192.0.2.10:80/tcp: backend [2001:db8::7]:80: address family differs from vip 192.0.2.10; direct routing cannot translate it",
		}},
		{"syntax.conf", []string{
			"syntax.conf:2: unterminated quoted string",
		}},
		{"notify-users.conf", []string{
			`notify-users.conf:11: notify_backup runs as "root", an earlier notify script of this block as "nobody"; xlb runs a block's notify scripts as one user`,
			`notify-users.conf:18: notify_fault runs as "nobody", an earlier notify script of this block as "root"; xlb runs a block's notify scripts as one user`,
			`notify-users.conf:24: quorum_down runs as "nobody", the other quorum script of this virtual_server as "root"; xlb runs a virtual server's quorum scripts as one user`,
			`notify-users.conf:27: notify_down runs as "nobody", the other notify script of this real_server as "root"; xlb runs a real server's notify scripts as one user`,
		}},
		{"vrrp.conf", []string{
			`vrrp.conf:2: state "MASTR" is not MASTER or BACKUP`,
			"vrrp.conf:4: virtual_router_id 256 is outside 1..255",
			"vrrp.conf:7: auth_type AH is not supported by xlb; use PASS or no authentication",
			`vrrp.conf:11: virtual_ipaddress: "192.0.2.1/33" is not an IP address or prefix`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, _, err := Load(filepath.Join("testdata/bad", tt.file))
			if err == nil {
				t.Fatalf("loaded a bad file: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned with an error")
			}
			var got []string
			for _, e := range service.Errors(err) {
				got = append(got, strings.TrimPrefix(e.Error(), "testdata/bad/"))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

type backend struct {
	Weight           int
	InhibitOnFailure bool
}

// TestSyntax covers the shapes keepalived.conf is written in.
func TestSyntax(t *testing.T) {
	const vs = "virtual_server 192.0.2.10 80 {\n lb_kind DR\n protocol TCP\n lb_algo rr\n"
	tests := []struct {
		name     string
		files    map[string]string
		backends []backend
		errs     []string
		warns    []string
	}{
		{
			name:     "one-line block",
			files:    map[string]string{"k.conf": vs + " real_server 198.51.100.7 80 { weight 2 }\n}\n"},
			backends: []backend{{Weight: 2}},
		},
		{
			name:     "brace on the next line",
			files:    map[string]string{"k.conf": vs + " real_server 198.51.100.7 80\n\n {\n weight 4\n }\n}\n"},
			backends: []backend{{Weight: 4}},
		},
		{
			name:     "comments everywhere",
			files:    map[string]string{"k.conf": "# top\n" + vs + " real_server 198.51.100.7 80 { # here\n weight 5 ! there\n inhibit_on_failure#not-a-comment-start\n}\n}\n"},
			warns:    []string{"k.conf:8: warning: unknown keyword inhibit_on_failure#not-a-comment-start in real_server (ignored)"},
			backends: []backend{{Weight: 5}},
		},
		{
			name:     "quoted string keeps braces and comment markers",
			files:    map[string]string{"k.conf": vs + " real_server 198.51.100.7 80 {\n notify_up \"/bin/echo { # ! }\"\n }\n}\n"},
			backends: []backend{{Weight: 1}},
		},
		{
			name:  "whole service on one line",
			files: map[string]string{"k.conf": "virtual_server 192.0.2.10 80 { lb_kind DR }\n"},
			errs:  []string{"k.conf:1: service 192.0.2.10:80/udp: has no backends"},
			warns: []string{"k.conf:1: warning: no protocol set; keepalived defaults to UDP (add `protocol TCP` for a TCP service)", "k.conf:1: warning: no scheduler set; keepalived defaults to wlc"},
		},
		{
			name: "include inside a block, relative to the including file",
			files: map[string]string{
				"k.conf":           vs + " include rs/*.conf\n}\n",
				"rs/a.conf":        "real_server 198.51.100.7 80 {\n weight 7\n}\n",
				"rs/b.conf":        "real_server 198.51.100.8 80 {\n inhibit_on_failure\n}\n",
				"rs/ignored.conf~": "garbage {",
			},
			backends: []backend{{Weight: 7}, {Weight: 1, InhibitOnFailure: true}},
		},
		{
			name:  "include may not close a block it did not open",
			files: map[string]string{"k.conf": vs + " include x.conf\n}\n", "x.conf": "}\n"},
			errs:  []string{"x.conf:1: unexpected }: no block is open"},
		},
		{
			name:  "self include",
			files: map[string]string{"k.conf": "include k.conf\n"},
			errs:  []string{"k.conf:1: include loop: k.conf includes k.conf"},
		},
		{
			name:  "conditional lines are refused",
			files: map[string]string{"k.conf": "global_defs {\n @main router_id a\n}\n"},
			errs:  []string{"k.conf:2: conditional configuration lines (@id ...) are not supported; write the file for this host"},
		},
		{
			name:  "multiple statements on one line",
			files: map[string]string{"k.conf": vs + " real_server 198.51.100.7 80 { weight 1 inhibit_on_failure }\n}\n"},
			errs:  []string{"k.conf:5: weight takes one value, got 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, data := range tt.files {
				fsys[name] = &fstest.MapFile{Data: []byte(data)}
			}
			cfg, warns, err := LoadFS(fsys, "k.conf")
			var gotErrs, gotWarns []string
			for _, e := range service.Errors(err) {
				gotErrs = append(gotErrs, e.Error())
			}
			for _, w := range warns {
				gotWarns = append(gotWarns, w.String())
			}
			if diff := cmp.Diff(tt.errs, gotErrs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.warns, gotWarns); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			var got []backend
			for _, b := range cfg.Services[0].Backends {
				got = append(got, backend{Weight: b.Weight, InhibitOnFailure: b.InhibitOnFailure})
			}
			if diff := cmp.Diff(tt.backends, got); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
		})
	}
}

// samplesDir holds keepalived's own doc/samples, outside this repository.
const samplesDir = "../../../../shared/peer/keepalived-samples"

// TestKeepalivedSamples reads keepalived's shipped samples: unmodified
// they are refused at every `lb_kind NAT` line; with NAT rewritten to DR
// they load, unless they use a feature xlb refuses for another reason.
func TestKeepalivedSamples(t *testing.T) {
	entries, err := os.ReadDir(samplesDir)
	if err != nil {
		t.Skipf("keepalived samples not available (%v); they live outside the repository", err)
	}
	// Samples that stay refused after the NAT rewrite, and the first error.
	refused := map[string]string{
		"keepalived.conf.IPv6":                 ":7: virtual_server_group is not supported",
		"keepalived.conf.SSL_GET":              ":20: auth_type AH is not supported",
		"keepalived.conf.UDP_CHECK":            ":23: UDP_CHECK is not supported",
		"keepalived.conf.fwmark":               ":7: virtual_server fwmark is not supported",
		"keepalived.conf.track_interface":      ":7: static_routes is not supported",
		"keepalived.conf.virtual_server_group": ":13: virtual_server_group is not supported",
	}
	headerRefused := map[string]bool{"keepalived.conf.fwmark": true, "keepalived.conf.virtual_server_group": true}
	natLine := regexp.MustCompile(`(?m)^\s*lb_kind NAT\s*$`)
	n := 0
	for _, e := range entries {
		name := e.Name()
		data, err := os.ReadFile(filepath.Join(samplesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		n++
		t.Run(name, func(t *testing.T) {
			_, _, err := LoadFS(fstest.MapFS{name: {Data: data}}, name)
			if natLine.Match(data) && err == nil {
				t.Fatalf("unmodified: loaded with lb_kind NAT")
			}
			for _, e := range errorStrings(err) {
				if !regexp.MustCompile("^" + regexp.QuoteMeta(name) + `:\d+: `).MatchString(e) {
					t.Errorf("unmodified: error without file:line: %q", e)
				}
			}
			errs := strings.Join(errorStrings(err), "\n")
			for _, loc := range natLine.FindAllIndex(data, -1) {
				if headerRefused[name] {
					// The whole virtual_server is refused at its first line.
					break
				}
				line := 1 + strings.Count(string(data[:loc[0]]), "\n")
				want := name + ":" + strconv.Itoa(line) + ": lb_kind NAT is not supported by xlb"
				if !strings.Contains(errs, want) {
					t.Errorf("unmodified: want error %q, got:\n%s", want, errs)
				}
			}
			dr := natLine.ReplaceAllFunc(data, func(b []byte) []byte { return []byte(strings.Replace(string(b), "NAT", "DR", 1)) })
			cfg, _, err := LoadFS(fstest.MapFS{name: {Data: dr}}, name)
			if want, ok := refused[name]; ok {
				got := errorStrings(err)
				if len(got) == 0 || !strings.HasPrefix(got[0], name+want) {
					t.Errorf("with DR: want first error %q, got %q", name+want, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("with DR: %v", err)
			}
			if !natLine.Match(data) && len(cfg.VRRP) == 0 {
				t.Errorf("sample loaded nothing")
			}
		})
	}
	if n == 0 {
		t.Skip("no samples found")
	}
}

func errorStrings(err error) []string {
	var out []string
	for _, e := range service.Errors(err) {
		out = append(out, e.Error())
	}
	return out
}

// TestForwarding covers how a real or sorry server gets its method: its
// own lvs_method, else the virtual server's as keepalived 2.2 resolves it.
func TestForwarding(t *testing.T) {
	gue := service.Forward{Method: service.Tunnel, Encap: service.GUE, Port: 6080}
	ipip := service.Forward{Method: service.Tunnel}
	const head = "virtual_server 192.0.2.10 80 {\n protocol TCP\n lb_algo rr\n"
	tests := []struct {
		name     string
		conf     string
		backends []service.Forward
		sorry    *service.Forward
		errs     []string
		warns    []string
	}{
		{
			name:     "every real server sets its own: no virtual server method needed",
			conf:     head + " real_server 203.0.113.20 80 {\n  lvs_method TUN\n }\n real_server 198.51.100.11 80 {\n  lvs_method DR\n }\n}\n",
			backends: []service.Forward{ipip, {}},
		},
		{
			name: "a sorry server without a method and none to inherit is NAT",
			conf: head + " sorry_server 198.51.100.9 80\n real_server 203.0.113.20 80 {\n  lvs_method TUN\n }\n}\n",
			errs: []string{"k.conf:1: no lb_kind set: keepalived defaults to NAT, which xlb does not serve; add `lb_kind DR` (or TUN)"},
		},
		{
			name:     "a real server takes the method set when its block begins",
			conf:     head + " lb_kind TUN type gue port 6080\n real_server 203.0.113.20 80 {\n }\n lb_kind DR\n real_server 198.51.100.11 80 {\n }\n}\n",
			backends: []service.Forward{gue, {}},
		},
		{
			name:     "the sorry server inherits, then sorry_server_lvs_method overrides",
			conf:     head + " lb_kind DR\n sorry_server 203.0.113.9 80\n sorry_server_lvs_method TUN type gue port 6080\n real_server 198.51.100.11 80 {\n }\n}\n",
			backends: []service.Forward{{}},
			sorry:    &gue,
		},
		{
			name:     "the sorry server inherits a tunnel",
			conf:     head + " lb_kind TUN\n sorry_server 203.0.113.9 80\n real_server 203.0.113.20 80 {\n }\n}\n",
			backends: []service.Forward{ipip},
			sorry:    &ipip,
		},
		{
			name:     "sorry_server_lvs_method without a sorry server",
			conf:     head + " lb_kind DR\n sorry_server_lvs_method TUN\n real_server 198.51.100.11 80 {\n }\n}\n",
			backends: []service.Forward{{}},
			warns:    []string{"k.conf:5: warning: sorry_server_lvs_method without a sorry_server (ignored)"},
		},
		{
			name:     "method names in any case, as xlb always read them",
			conf:     head + " lb_kind tun type gue port 6080\n real_server 203.0.113.20 80 {\n }\n}\n",
			backends: []service.Forward{gue},
		},
		{
			name:     "gre and remcsum after DR are ignored, as keepalived ignores every option there",
			conf:     head + " lb_kind DR type gre csum\n real_server 198.51.100.11 80 {\n  lvs_method DR type gue port 6080 remcsum\n }\n}\n",
			backends: []service.Forward{{}},
			warns: []string{
				"k.conf:4: warning: lb_kind DR: tunnel options apply only to TUN (ignored)",
				"k.conf:6: warning: lvs_method DR: tunnel options apply only to TUN (ignored)",
			},
		},
		{
			name: "options after DR are checked as keepalived checks them",
			conf: head + " lb_kind DR type gue\n real_server 198.51.100.11 80 {\n  lvs_method DR type gre remcsum\n }\n}\n",
			errs: []string{"k.conf:4: lb_kind: type gue needs port NUM", "k.conf:6: lvs_method: type gre takes no remcsum"},
		},
		{
			name:     "IPv6 in IPv6",
			conf:     "virtual_server 2001:db8::10 80 {\n protocol TCP\n lb_algo rr\n lb_kind TUN\n real_server 2001:db8:1::20 80 {\n }\n}\n",
			backends: []service.Forward{ipip},
		},
		{
			name: "an IPv4 real server of an IPv6 VIP",
			conf: "virtual_server 2001:db8::10 80 {\n protocol TCP\n lb_algo rr\n lb_kind TUN\n real_server 203.0.113.20 80 {\n }\n}\n",
			errs: []string{"k.conf:5: service [2001:db8::10]:80/tcp: backend 203.0.113.20:80: address family differs from vip 2001:db8::10; xlb tunnels IPv4 in IPv4 and IPv6 in IPv6 only"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warns, err := LoadFS(fstest.MapFS{"k.conf": {Data: []byte(tt.conf)}}, "k.conf")
			var gotWarns []string
			for _, w := range warns {
				gotWarns = append(gotWarns, w.String())
			}
			if diff := cmp.Diff(tt.errs, errorStrings(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.warns, gotWarns); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			s := cfg.Services[0]
			var got []service.Forward
			for _, b := range s.Backends {
				got = append(got, b.Forward)
			}
			if diff := cmp.Diff(tt.backends, got); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
			var gotSorry *service.Forward
			if s.SorryServer != nil {
				gotSorry = &s.SorryServer.Forward
			}
			if diff := cmp.Diff(tt.sorry, gotSorry); diff != "" {
				t.Errorf("sorry server (-want +got):\n%s", diff)
			}
		})
	}
}
