package main

import (
	"bytes"
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
	for _, name := range []string{"seed-blog.conf", "full.conf", "includes/keepalived.conf", "defaults.conf", "global-defaults.conf", "advert-int.conf"} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"check", "-f", filepath.Join(corpus, "good", name)}, &stdout, &stderr)
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
			corpus + "/bad/nat.conf:7: no lb_kind set: keepalived defaults to NAT, which xlb does not serve; add `lb_kind DR`"},
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
