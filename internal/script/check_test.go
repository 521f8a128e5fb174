package script

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-project/xlb/internal/testutil"
)

// nobody owns what must not pass script security (Debian's nobody and
// nogroup).
const nobody = 65534

// needRoot skips tests that need root: only root can own a script that
// passes script security, chown one that fails it, or run one as another
// user.
func needRoot(t *testing.T, why string) {
	t.Helper()
	testutil.RequireRoot(t, why)
}

// layout is a script and the configuration file naming it, in a fresh
// directory.
type layout struct{ dir, script, conf string }

func newLayout(t *testing.T) layout {
	t.Helper()
	dir := t.TempDir()
	return layout{
		dir:    dir,
		script: testutil.WriteFile(t, filepath.Join(dir, "check.sh"), "#!/bin/sh\nexit 0\n", 0o700),
		conf:   testutil.WriteFile(t, filepath.Join(dir, "xlb.conf"), "# config\n", 0o600),
	}
}

func TestCheck(t *testing.T) {
	needRoot(t, "scripts must be owned by root to pass script security, and chown makes the ones that fail")
	tests := []struct {
		name string
		// setup breaks (or not) the layout and returns the line to check
		// when it is not the script's path alone.
		setup  func(t *testing.T, l layout) string
		noConf bool
		// wantErr is the error ($DIR: the layout's directory), or its
		// start when wantErr2 is its end; empty: secure.
		wantErr, wantErr2 string
	}{
		{name: "root-owned 0700 script, 0600 config"},
		{name: "arguments after the program", setup: func(_ *testing.T, l layout) string { return l.script + ` rs1 "two words"` }},
		{name: "script writable by others", wantErr: "refusing to run $DIR/check.sh: $DIR/check.sh is writable by others (mode -rwx----w-)",
			setup: func(t *testing.T, l layout) string { testutil.Chmod(t, l.script, 0o702); return "" }},
		{name: "script writable by a group other than root's", wantErr: "refusing to run $DIR/check.sh: $DIR/check.sh is writable by group 65534 (mode -rwxrwx---)",
			setup: func(t *testing.T, l layout) string {
				testutil.Chown(t, l.script, 0, nobody)
				testutil.Chmod(t, l.script, 0o770)
				return ""
			}},
		{name: "script writable by root's group",
			setup: func(t *testing.T, l layout) string { testutil.Chmod(t, l.script, 0o770); return "" }},
		{name: "script not owned by root", wantErr: "refusing to run $DIR/check.sh: $DIR/check.sh is owned by uid 65534, not root",
			setup: func(t *testing.T, l layout) string { testutil.Chown(t, l.script, nobody, 0); return "" }},
		{name: "script not executable", wantErr: "refusing to run $DIR/check.sh: $DIR/check.sh is not executable",
			setup: func(t *testing.T, l layout) string { testutil.Chmod(t, l.script, 0o600); return "" }},
		{name: "script is a directory", wantErr: "refusing to run $DIR/check.sh: $DIR/check.sh is not a regular file",
			setup: func(t *testing.T, l layout) string {
				if err := os.Remove(l.script); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(l.script, 0o700); err != nil {
					t.Fatal(err)
				}
				return ""
			}},
		{name: "script missing", wantErr: "refusing to run $DIR/check.sh: lstat $DIR/check.sh: no such file or directory",
			setup: func(t *testing.T, l layout) string {
				if err := os.Remove(l.script); err != nil {
					t.Fatal(err)
				}
				return ""
			}},
		{name: "directory writable by others", wantErr: "refusing to run $DIR/check.sh: $DIR is writable by others (mode -rwxrwxrwx)",
			setup: func(t *testing.T, l layout) string { testutil.Chmod(t, l.dir, 0o777); return "" }},
		{name: "sticky directory writable by others",
			setup: func(t *testing.T, l layout) string { testutil.Chmod(t, l.dir, 0o777|os.ModeSticky); return "" }},
		{name: "directory not owned by root", wantErr: "refusing to run $DIR/check.sh: $DIR is owned by uid 65534, not root",
			setup: func(t *testing.T, l layout) string { testutil.Chown(t, l.dir, nobody, nobody); return "" }},
		{name: "directory writable by a group other than root's", wantErr: "refusing to run $DIR/check.sh: $DIR is writable by group 65534 (mode -rwxrwx---)",
			setup: func(t *testing.T, l layout) string {
				testutil.Chown(t, l.dir, 0, nobody)
				testutil.Chmod(t, l.dir, 0o770)
				return ""
			}},
		{name: "config file writable by others", wantErr: "refusing to run $DIR/check.sh: configuration file: $DIR/xlb.conf is writable by others (mode -rw----rw-)",
			setup: func(t *testing.T, l layout) string { testutil.Chmod(t, l.conf, 0o606); return "" }},
		{name: "config file not owned by root", wantErr: "refusing to run $DIR/check.sh: configuration file: $DIR/xlb.conf is owned by uid 65534, not root",
			setup: func(t *testing.T, l layout) string { testutil.Chown(t, l.conf, nobody, nobody); return "" }},
		{name: "config file missing", wantErr: "refusing to run $DIR/check.sh: configuration file: lstat $DIR/xlb.conf: no such file or directory",
			setup: func(t *testing.T, l layout) string {
				if err := os.Remove(l.conf); err != nil {
					t.Fatal(err)
				}
				return ""
			}},
		{name: "no config file: only the script is checked", noConf: true,
			setup: func(t *testing.T, l layout) string { testutil.Chown(t, l.conf, nobody, nobody); return "" }},
		{name: "symlink to a script in an insecure directory", wantErr: "refusing to run $DIR/check.sh: /tmp/", wantErr2: "/real.sh is owned by uid 65534, not root",
			setup: func(t *testing.T, l layout) string {
				real := testutil.WriteFile(t, filepath.Join(t.TempDir(), "real.sh"), "#!/bin/sh\n", 0o700)
				testutil.Chown(t, real, nobody, nobody)
				symlink(t, real, l.script)
				return ""
			}},
		{name: "symlink to a secure script",
			setup: func(t *testing.T, l layout) string {
				symlink(t, testutil.WriteFile(t, filepath.Join(t.TempDir(), "real.sh"), "#!/bin/sh\n", 0o700), l.script)
				return ""
			}},
		{name: "symlink to a directory with an insecure directory above it", wantErr: "refusing to run $DIR/bin/real.sh: /tmp/", wantErr2: "/open is writable by others (mode -rwxrwxrwx)",
			setup: func(t *testing.T, l layout) string {
				open := filepath.Join(t.TempDir(), "open")
				inner := filepath.Join(open, "bin")
				for _, d := range []string{open, inner} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				testutil.Chmod(t, open, 0o777)
				testutil.WriteFile(t, filepath.Join(inner, "real.sh"), "#!/bin/sh\n", 0o700)
				link := filepath.Join(l.dir, "bin")
				if err := os.Symlink(inner, link); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(link, "real.sh")
			}},
		{name: "bare name found on PATH", setup: func(*testing.T, layout) string { return "true --x" }},
		{name: "bare name not on PATH", wantErr: `exec: "no-such-program-xlb": executable file not found in $PATH`,
			setup: func(*testing.T, layout) string { return "no-such-program-xlb" }},
		{name: "unbalanced quote", wantErr: `unterminated " quote`,
			setup: func(t *testing.T, l layout) string { return l.script + ` "open` }},
		{name: "empty line", wantErr: "no program", setup: func(*testing.T, layout) string { return " " }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			line := l.script
			if tt.setup != nil {
				if s := tt.setup(t, l); s != "" {
					line = s
				}
			}
			conf := l.conf
			if tt.noConf {
				conf = ""
			}
			err := Check(line, conf)
			want := strings.ReplaceAll(tt.wantErr, "$DIR", l.dir)
			got := errString(err)
			if tt.wantErr2 == "" && got != want ||
				tt.wantErr2 != "" && !(strings.HasPrefix(got, want) && strings.HasSuffix(got, tt.wantErr2)) {
				t.Errorf("Check(%q) error:\n %s\nwant:\n %s...%s", line, got, want, tt.wantErr2)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestCheckAsUser checks, without root, that a script owned by the
// (non-root) user running the test is refused.
func TestCheckAsUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as a non-root user; TestCheck covers root")
	}
	l := newLayout(t)
	err := Check(l.script, "")
	if err == nil || !strings.Contains(err.Error(), "not root") {
		t.Fatalf("Check error %v, want a refusal", err)
	}
}
