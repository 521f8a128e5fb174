package healthcheck

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/service"
)

// needRoot skips tests that need root: only root can own a script that
// passes keepalived's script security, or chown one that fails it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: scripts must be owned by root to pass script security")
	}
}

// writeFile writes a file with exactly mode (no umask).
func writeFile(t *testing.T, path, body string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// miscCheck returns a MISC_CHECK for a script in a fresh directory, named
// by a fresh configuration file.
func miscCheck(t *testing.T, body string) (service.Check, string) {
	t.Helper()
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "check.sh"), "#!/bin/sh\n"+body+"\n", 0o700)
	conf := writeFile(t, filepath.Join(dir, "xlb.conf"), "# config\n", 0o600)
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
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("probe failed: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("probe error %v, want one containing %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantWeight, res.Weight); diff != "" {
				t.Errorf("weight (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMiscProbeFindsBareNames(t *testing.T) {
	needRoot(t)
	if _, err := probe(t, service.Check{Kind: service.CheckMisc, MiscPath: "true"}, rs1); err != nil {
		t.Errorf("misc_path true: %v", err)
	}
	if _, err := probe(t, service.Check{Kind: service.CheckMisc, MiscPath: "false"}, rs1); err == nil {
		t.Error("misc_path false passed")
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

func TestMiscProbeTimeout(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name string
		body string
		// wantTerm: the script's child saw SIGTERM (it leaves "$1.term").
		wantTerm bool
	}{
		{
			name: "SIGTERM goes to the script's whole process group",
			body: `trap 'wait; exit 1' TERM
sh -c 'trap "touch \"\$0.term\"; exit 0" TERM; sleep 30 & wait' "$1" &
echo $! > "$1"
wait`,
			wantTerm: true,
		},
		{
			name: "a script that ignores SIGTERM is killed",
			body: `trap '' TERM; sleep 30 & echo $! > "$1"; wait; wait`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dir := miscCheck(t, tt.body)
			pidfile := filepath.Join(dir, "child.pid")
			c.MiscPath += " " + pidfile
			ctx, cancel := context.WithTimeout(context.Background(), shortTimeout)
			defer cancel()
			_, err := (&DefaultProber{TermGrace: shortTimeout}).Probe(ctx, c, rs1)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("probe error %v, want the context's deadline", err)
			}
			b, err := os.ReadFile(pidfile)
			if err != nil {
				t.Fatalf("script did not start its child: %v", err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			// Probe has sent the whole process group SIGKILL; the
			// child dies as soon as the kernel delivers it.
			deadline := time.Now().Add(guard)
			for !gone(pid) {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("the script's child %d outlived the timeout", pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
			_, err = os.Stat(pidfile + ".term")
			if got := err == nil; got != tt.wantTerm {
				t.Errorf("child saw SIGTERM: %v, want %v", got, tt.wantTerm)
			}
		})
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

func TestScriptSecurity(t *testing.T) {
	needRoot(t)
	const nobody = 65534
	tests := []struct {
		name    string
		setup   func(t *testing.T, script, dir, conf string)
		wantErr string // substring; empty: secure
	}{
		{name: "root-owned 0700 script, 0600 config", setup: func(*testing.T, string, string, string) {}},
		{name: "script writable by others", wantErr: "check.sh is writable by others",
			setup: func(t *testing.T, script, _, _ string) { chmod(t, script, 0o702) }},
		{name: "script writable by a non-root group", wantErr: "check.sh is writable by group 65534",
			setup: func(t *testing.T, script, _, _ string) { chown(t, script, 0, nobody); chmod(t, script, 0o770) }},
		{name: "script writable by root's group", setup: func(t *testing.T, script, _, _ string) { chmod(t, script, 0o770) }},
		{name: "script not owned by root", wantErr: "check.sh is owned by uid 65534, not root",
			setup: func(t *testing.T, script, _, _ string) { chown(t, script, nobody, 0) }},
		{name: "script not executable", wantErr: "check.sh is not executable",
			setup: func(t *testing.T, script, _, _ string) { chmod(t, script, 0o600) }},
		{name: "directory writable by others", wantErr: "is writable by others",
			setup: func(t *testing.T, _, dir, _ string) { chmod(t, dir, 0o777) }},
		{name: "sticky directory writable by others", setup: func(t *testing.T, _, dir, _ string) { chmod(t, dir, 0o777|os.ModeSticky) }},
		{name: "directory not owned by root", wantErr: "is owned by uid 65534, not root",
			setup: func(t *testing.T, _, dir, _ string) { chown(t, dir, nobody, nobody) }},
		{name: "config file writable by others", wantErr: "xlb.conf is writable by others",
			setup: func(t *testing.T, _, _, conf string) { chmod(t, conf, 0o606) }},
		{name: "config file not owned by root", wantErr: "xlb.conf is owned by uid 65534, not root",
			setup: func(t *testing.T, _, _, conf string) { chown(t, conf, nobody, nobody) }},
		{name: "symlink to a script in an insecure directory", wantErr: "real.sh is owned by uid 65534",
			setup: func(t *testing.T, script, _, _ string) {
				other := t.TempDir()
				real := writeFile(t, filepath.Join(other, "real.sh"), "#!/bin/sh\ntouch \"$0.ran\"\n", 0o700)
				chown(t, real, nobody, nobody)
				if err := os.Remove(script); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(real, script); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dir := miscCheck(t, `touch "$0.ran"`)
			tt.setup(t, c.MiscPath, dir, c.Source.File)
			err := CheckScriptSecurity(c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckScriptSecurity: %v", err)
				}
				if _, err := probe(t, c, rs1); err != nil {
					t.Fatalf("probe failed: %v", err)
				}
				if _, err := os.Stat(c.MiscPath + ".ran"); err != nil {
					t.Errorf("secure script did not run: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), c.MiscPath) {
				t.Fatalf("CheckScriptSecurity error %v, want one naming %s and containing %q", err, c.MiscPath, tt.wantErr)
			}
			_, perr := probe(t, c, rs1)
			if perr == nil || perr.Error() != err.Error() {
				t.Errorf("probe error %v, want %v", perr, err)
			}
			if _, err := os.Stat(c.MiscPath + ".ran"); err == nil {
				t.Error("the insecure script ran")
			}
		})
	}
}

// TestScriptSecurityAsUser checks, without root, that a script owned by
// the (non-root) user running the test is refused.
func TestScriptSecurityAsUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as a non-root user; TestScriptSecurity covers root")
	}
	c, _ := miscCheck(t, "exit 0")
	err := CheckScriptSecurity(c)
	if err == nil || !strings.Contains(err.Error(), "not root") {
		t.Fatalf("CheckScriptSecurity error %v, want a refusal", err)
	}
}

func TestCheckScriptSecurityIgnoresOtherKinds(t *testing.T) {
	if err := CheckScriptSecurity(service.Check{Kind: service.CheckTCP}); err != nil {
		t.Error(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "/bin/check", want: []string{"/bin/check"}},
		{in: "  /bin/check   a\tb ", want: []string{"/bin/check", "a", "b"}},
		{in: `/bin/check "two words" 'single $x' x\ y`, want: []string{"/bin/check", "two words", "single $x", "x y"}},
		{in: `/bin/check "" end`, want: []string{"/bin/check", "", "end"}},
		{in: `/bin/check "say \"hi\""`, want: []string{"/bin/check", `say "hi"`}},
		{in: `/bin/check 'a\b'`, want: []string{"/bin/check", `a\b`}},
		{in: `/bin/check "open`, wantErr: true},
		{in: `/bin/check \`, wantErr: true},
		{in: "", want: nil},
	}
	for _, tt := range tests {
		got, err := splitCommand(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("splitCommand(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("splitCommand(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}
