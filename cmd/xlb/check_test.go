package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-project/xlb/internal/testutil"
)

const corpus = "../../internal/config/keepalived/testdata"

// TestCheckPlan: `xlb check` on each good keepalived.conf exits 0 and
// prints the golden plan (warnings go to stderr, also golden).
func TestCheckPlan(t *testing.T) {
	for _, name := range []string{"seed-blog.conf", "full.conf", "includes/keepalived.conf", "defaults.conf", "global-defaults.conf", "advert-int.conf", "tun.conf"} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// The corpus names scripts of other machines.
			code := run([]string{"check", "--no-script-check", "-f", filepath.Join(corpus, "good", name)}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			got := strings.ReplaceAll(stdout.String(), corpus+"/", "")
			if stderr.Len() > 0 {
				got += "--- stderr\n" + strings.ReplaceAll(stderr.String(), corpus+"/", "")
			}
			goldenPath := filepath.Join("testdata", strings.ReplaceAll(name, "/", "_")+".plan")
			testutil.Golden(t, goldenPath, []byte(got))
		})
	}
}

func TestCheckExitCodes(t *testing.T) {
	good := filepath.Join(corpus, "good", "seed-blog.conf")
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring
		stderrLine string // one exact line of stderr
	}{
		{"errors, one per line", []string{"check", "-f", filepath.Join(corpus, "bad", "nat.conf")}, 1, "",
			corpus + "/bad/nat.conf:7: no lb_kind set: keepalived defaults to NAT, which xlb does not serve; add `lb_kind DR` (or TUN)"},
		{"warnings are marked", []string{"check", "-f", filepath.Join(corpus, "bad", "nat.conf")}, 1, "",
			corpus + "/bad/nat.conf:1: warning: no scheduler set; keepalived defaults to wlc"},
		{"yaml output", []string{"check", "-f", good, "--output", "yaml"}, 0, "  - vip: 192.168.1.100\n", ""},
		{"forced format", []string{"check", "-f", good, "--format", "yaml"}, 1, "", ""},
		{"bad output", []string{"check", "-f", good, "--output", "json"}, 2, "", `xlb check: unknown --output "json" (want plan or yaml)`},
		{"missing file", []string{"check", "-f", "does-not-exist.conf"}, 1, "", "does-not-exist.conf: cannot read: no such file or directory"},
		{"unknown command", []string{"frobnicate"}, 2, "", `xlb: unknown command "frobnicate"`},
		{"no command", nil, 2, "", "usage: xlb COMMAND [flags]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout.String())
			}
			if tt.stderrLine != "" && !containsLine(stderr.String(), tt.stderrLine) {
				t.Errorf("stderr lacks the line %q:\n%s", tt.stderrLine, stderr.String())
			}
		})
	}
}

func containsLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// TestCheckPlanFlapDamping: xlb's own damping knob shows in the plan.
func TestCheckPlanFlapDamping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.yaml")
	doc := "global:\n  flap_damping:\n    changes: 4\n    window: 60s\n    hold_down: 5m\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-f", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	const want = "flap damping: a backend changing state more than 4 times in 1m0s is held down until 5m0s pass without a change\n"
	if !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("plan:\n%s\nwant it to start with:\n%s", stdout.String(), want)
	}
}

// TestRunFlowsRange: a flow table size that does not fit the map is an
// error, not silently truncated.
func TestRunFlowsRange(t *testing.T) {
	for _, n := range []string{"0", "4294967296"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"run", "-i", "eth0", "--flows", n}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--flows "+n) {
			t.Errorf("--flows %s: exit %d, stderr %q; want 2 and an error naming it", n, code, stderr.String())
		}
	}
}

// TestCheckRefusals: xlb check refuses what xlb run would, short of
// touching the host, each refusal at the line of the keyword at fault.
func TestCheckRefusals(t *testing.T) {
	vips := func(n int, format string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "        "+format+"\n", i/256, i%256)
		}
		return b.String()
	}
	services := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "virtual_server 192.0.%d.%d 80 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.51.100.7 80 {\n    }\n}\n", 2+i/256, i%256)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, conf string
		want       []string // lines of stderr that must be there, the file as FILE
	}{
		{"weight at its own line", "virtual_server 192.0.2.10 80 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.51.100.7 80 {\n\n        weight -3\n    }\n}\n",
			[]string{"FILE:6: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: weight -3 is negative"}},
		{"priority at its own line", "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 0\n    virtual_ipaddress { 192.0.2.10 }\n}\n",
			[]string{"FILE:4: priority 0 is outside 1..255"}},
		{"256 addresses in one advertisement", "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n" + vips(256, "10.%d.%d.1") + "    }\n}\n",
			[]string{"FILE:4: vrrp_instance VI_1: 256 virtual_ipaddress entries; a VRRP advertisement carries at most 255"}},
		{"IPv6 advertisement past the MTU", "vrrp_instance VI_6 {\n    interface eth0\n    virtual_router_id 52\n    virtual_ipaddress {\n" + vips(91, "2001:db8:%x:%x::1") + "    }\n}\n",
			[]string{"FILE:4: vrrp_instance VI_6: 91 IPv6 addresses make a 1504-byte advertisement; a 1500-byte link carries 90 at most: move some to another vrrp_instance"}},
		{"more services than the data path holds", services(4096),
			[]string{"FILE:24571: service 192.0.17.255:80/tcp: 4096 services, the data path holds 4095"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keepalived.conf")
			if err := os.WriteFile(path, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{"check", "-f", path}, &stdout, &stderr); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
			}
			got := strings.ReplaceAll(stderr.String(), path, "FILE")
			for _, w := range tc.want {
				if !strings.Contains(got, w+"\n") {
					t.Errorf("stderr lacks\n %s\ngot:\n%s", w, got)
				}
			}
		})
	}
}

// TestCheckScriptSecurity: every kind of script xlb runs is refused by
// xlb check when it is writable by others, at the line that names it.
func TestCheckScriptSecurity(t *testing.T) {
	testutil.RequireRoot(t, "script security wants root-owned scripts")
	dir := t.TempDir()
	testutil.Chmod(t, dir, 0o755)
	bad := testutil.WriteFile(t, filepath.Join(dir, "open.sh"), "#!/bin/sh\nexit 0\n", 0o777)
	conf := strings.ReplaceAll(`vrrp_script chk {
    script "BAD"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    notify_master "BAD"
    track_script {
        chk
    }
    virtual_ipaddress { 192.0.2.10 }
}
virtual_server 192.0.2.10 80 {
    lb_kind DR
    protocol TCP
    quorum_up "BAD"
    real_server 198.51.100.7 80 {
        notify_down "BAD"
        MISC_CHECK {
            misc_path "BAD"
        }
    }
}
`, "BAD", bad)
	path := testutil.WriteFile(t, filepath.Join(dir, "keepalived.conf"), conf, 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-f", path}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	got := strings.ReplaceAll(strings.ReplaceAll(stderr.String(), path, "FILE"), bad, "BAD")
	for _, w := range []string{
		`FILE:2: vrrp_script chk: script "BAD": refusing to run BAD: BAD is writable by others`,
		`FILE:7: vrrp_instance VI_1: notify_master "BAD": refusing to run BAD: BAD is writable by others`,
		`FILE:16: service 192.0.2.10:80/tcp: quorum_up "BAD": refusing to run BAD: BAD is writable by others`,
		`FILE:18: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: notify_down "BAD": refusing to run BAD: BAD is writable by others`,
		`FILE:20: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: misc_path "BAD": refusing to run BAD: BAD is writable by others`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("stderr lacks\n %s\ngot:\n%s", w, got)
		}
	}
	if code := run([]string{"check", "--no-script-check", "-f", path}, &stdout, &stderr); code != 0 {
		t.Errorf("--no-script-check: exit %d, want 0", code)
	}
}

// TestCheckPlanBGP: `xlb check` shows the bgp section (peers, timers,
// per-VIP attributes), also of a YAML file extending a keepalived.conf.
func TestCheckPlanBGP(t *testing.T) {
	const dir = "../../internal/config/testdata/bgp"
	for _, name := range []string{"full.yaml", "extends.yaml"} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"check", "-f", filepath.Join(dir, name)}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			got := strings.ReplaceAll(stdout.String(), dir+"/", "")
			testutil.Golden(t, filepath.Join("testdata", "bgp_"+strings.TrimSuffix(name, ".yaml")+".plan"), []byte(got))
		})
	}
}

// TestCheckPlanVLAN: `xlb check` says which services a VLAN limits.
func TestCheckPlanVLAN(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-f", filepath.Join("testdata", "vlan.yaml")}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	testutil.Golden(t, filepath.Join("testdata", "vlan.yaml.plan"), stdout.Bytes())
}
