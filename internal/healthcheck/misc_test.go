package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/service"

	"github.com/xlb-project/xlb/internal/testutil"
)

// needRoot skips tests that need root: only root can own a script that
// passes keepalived's script security, or chown one that fails it.
func needRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "scripts must be owned by root to pass script security")
}

// miscCheck returns a MISC_CHECK for a script in a fresh directory, named
// by a fresh configuration file.
func miscCheck(t *testing.T, body string) (service.Check, string) {
	t.Helper()
	dir := t.TempDir()
	path := testutil.WriteFile(t, filepath.Join(dir, "check.sh"), "#!/bin/sh\n"+body+"\n", 0o700)
	conf := testutil.WriteFile(t, filepath.Join(dir, "xlb.conf"), "# config\n", 0o600)
	return service.Check{Kind: service.CheckMisc, MiscPath: path, Source: service.Pos{File: conf, Line: 1}}, dir
}

func TestMiscProbe(t *testing.T) {
	needRoot(t)
	w := func(n int) *int { return &n }
	tests := []struct {
		name       string
		body       string
		args       string
		dynamic    bool
		wantErr    string
		wantWeight *int
	}{
		{name: "exit 0 passes", body: "exit 0"},
		{name: "exit 1 fails", body: "exit 1", wantErr: "exit status 1"},
		{name: "exit 3 fails without misc_dynamic", body: "exit 3", wantErr: "exit status 3"},
		{name: "misc_dynamic: exit 12 passes with weight 10", body: "exit 12", dynamic: true, wantWeight: w(10)},
		{name: "misc_dynamic: exit 2 passes with weight 0", body: "exit 2", dynamic: true, wantWeight: w(0)},
		{name: "misc_dynamic: exit 255 passes with weight 253", body: "exit 255", dynamic: true, wantWeight: w(253)},
		{name: "misc_dynamic: exit 0 passes and leaves the weight", body: "exit 0", dynamic: true},
		{name: "misc_dynamic: exit 1 fails", body: "exit 1", dynamic: true, wantErr: "exit status 1"},
		{name: "killed by a signal fails", body: "kill -KILL $$", wantErr: "killed by signal 9"},
		{name: "arguments are passed, quotes group", body: `[ "$1" = rs1 ] && [ "$2" = "two words" ]`, args: ` rs1 "two words"`},
		{name: "wrong arguments fail", body: `[ "$1" = rs1 ]`, args: " rs2", wantErr: "exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := miscCheck(t, tt.body)
			c.MiscPath += tt.args
			c.MiscDynamic = tt.dynamic
			res, err := probe(t, c, rs1)
			wantProbeErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.wantWeight, res.Weight); diff != "" {
				t.Errorf("weight (-want +got):\n%s", diff)
			}
		})
	}
}

// gone reports whether pid has exited (a zombie counts: it will never run
// again).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// TestMiscProbeTimeout: a script still running at misc_timeout fails the
// probe, and it and its children are stopped, SIGKILL following SIGTERM
// after termGrace (internal/script tests how). With a grace of 1 ns the
// script's SIGTERM handler, a 200 ms cleanup, cannot finish; with
// keepalived's 2 s it would.
func TestMiscProbeTimeout(t *testing.T) {
	needRoot(t)
	c, dir := miscCheck(t, `trap 'sleep 0.2; touch "$0.clean"; exit 0' TERM
sleep 30 & echo $! > "$1"
wait`)
	pidfile := filepath.Join(dir, "child.pid")
	c.MiscPath += " " + pidfile
	// Long enough for the shell to start its child on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := (&DefaultProber{termGrace: time.Nanosecond}).Probe(ctx, c, rs1)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), fmt.Sprintf("misc_path %q: ", c.MiscPath)) {
		t.Fatalf("probe error %v, want the context's deadline, naming misc_path", err)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("script did not start its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(guard)
	for !gone(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the script's child %d outlived the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "check.sh.clean")); err == nil {
		t.Error("the script finished its SIGTERM handler: termGrace was not applied")
	}
}

func TestMiscProbeUser(t *testing.T) {
	needRoot(t)
	c, dir := miscCheck(t, `[ "$(id -u)" = 65534 ]`)
	// nobody must reach the script: open the directories on its way.
	for d := dir; d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Chmod(c.MiscPath, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := probe(t, c, rs1); err == nil {
		t.Fatal("script passed as root; the test cannot tell users apart")
	}
	c.User = "nobody"
	if _, err := probe(t, c, rs1); err != nil {
		t.Errorf("script as user nobody: %v", err)
	}
	c.User = "no-such-user-xlb"
	if _, err := probe(t, c, rs1); err == nil || !strings.Contains(err.Error(), "no-such-user-xlb") {
		t.Errorf("unknown user: error %v, want one naming the user", err)
	}
}

// TestScriptSecurity checks that MISC_CHECK applies script security to
// misc_path and to the configuration file naming it (c.Source.File), and
// that the probe refuses to run an insecure script with the same error;
// internal/script tests the rules themselves.
func TestScriptSecurity(t *testing.T) {
	needRoot(t)
	const nobody = 65534
	tests := []struct {
		name    string
		setup   func(t *testing.T, c service.Check)
		wantErr string // after "misc_path ...: refusing to run <script>: "; empty: secure
	}{
		{name: "secure", setup: func(*testing.T, service.Check) {}},
		{name: "script not owned by root", wantErr: "$SCRIPT is owned by uid 65534, not root",
			setup: func(t *testing.T, c service.Check) { testutil.Chown(t, c.MiscPath, nobody, 0) }},
		{name: "config file writable by others", wantErr: "configuration file: $CONF is writable by others (mode -rw----rw-)",
			setup: func(t *testing.T, c service.Check) { testutil.Chmod(t, c.Source.File, 0o606) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := miscCheck(t, `touch "$0.ran"`)
			path := c.MiscPath
			tt.setup(t, c)
			c.MiscPath += " arg"
			err := CheckScriptSecurity(c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckScriptSecurity: %v", err)
				}
				if _, err := probe(t, c, rs1); err != nil {
					t.Fatalf("probe failed: %v", err)
				}
				if _, err := os.Stat(path + ".ran"); err != nil {
					t.Errorf("secure script did not run: %v", err)
				}
				return
			}
			want := fmt.Sprintf("misc_path %q: refusing to run %s: ", c.MiscPath, path) +
				strings.NewReplacer("$SCRIPT", path, "$CONF", c.Source.File).Replace(tt.wantErr)
			if err == nil || err.Error() != want {
				t.Fatalf("CheckScriptSecurity error:\n %v\nwant:\n %s", err, want)
			}
			_, perr := probe(t, c, rs1)
			if perr == nil || perr.Error() != want {
				t.Errorf("probe error %v, want %v", perr, want)
			}
			if _, err := os.Stat(path + ".ran"); err == nil {
				t.Error("the insecure script ran")
			}
		})
	}
}

func TestCheckScriptSecurityIgnoresOtherKinds(t *testing.T) {
	if err := CheckScriptSecurity(service.Check{Kind: service.CheckTCP}); err != nil {
		t.Error(err)
	}
}
