package ha

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// TestNotifySecurity checks that checkNotify, which Prepare runs for
// every instance and sync group, refuses notify scripts that fail
// keepalived's script security, naming the instance or group and the
// keyword; internal/script tests the rules themselves.
func TestNotifySecurity(t *testing.T) {
	testutil.RequireRoot(t, "creates root-owned scripts and chown them")
	dir := t.TempDir()
	testutil.Chmod(t, dir, 0o755)
	secure := testutil.WriteFile(t, filepath.Join(dir, "ok.sh"), "#!/bin/sh\n", 0o755)
	insecure := testutil.WriteFile(t, filepath.Join(dir, "user.sh"), "#!/bin/sh\n", 0o755)
	testutil.Chown(t, insecure, 65534, 0)
	conf := testutil.WriteFile(t, filepath.Join(dir, "keepalived.conf"), "", 0o666)
	refused := fmt.Sprintf("refusing to run %s: %s is owned by uid 65534, not root", insecure, insecure)
	tests := []struct {
		name    string
		notify  service.Notify
		group   bool   // the notify scripts are the sync group's
		conf    string // the configuration file they come from
		wantErr string
	}{
		{name: "secure scripts", notify: service.Notify{Any: secure + ` "an arg"`, Master: "true", Backup: secure, Fault: secure, Stop: secure}},
		{name: "notify", notify: service.Notify{Any: insecure},
			wantErr: fmt.Sprintf("vrrp_instance VI_1: notify %q: %s", insecure, refused)},
		{name: "notify_master", notify: service.Notify{Any: secure, Master: insecure + " --up"},
			wantErr: fmt.Sprintf("vrrp_instance VI_1: notify_master %q: %s", insecure+" --up", refused)},
		{name: "notify_backup", notify: service.Notify{Backup: insecure},
			wantErr: fmt.Sprintf("vrrp_instance VI_1: notify_backup %q: %s", insecure, refused)},
		{name: "notify_fault", notify: service.Notify{Fault: insecure},
			wantErr: fmt.Sprintf("vrrp_instance VI_1: notify_fault %q: %s", insecure, refused)},
		{name: "notify_stop", notify: service.Notify{Stop: insecure},
			wantErr: fmt.Sprintf("vrrp_instance VI_1: notify_stop %q: %s", insecure, refused)},
		{name: "missing", notify: service.Notify{Master: filepath.Join(dir, "missing.sh")},
			wantErr: fmt.Sprintf("vrrp_instance VI_1: notify_master %q: refusing to run %[1]s: lstat %[1]s: no such file or directory", filepath.Join(dir, "missing.sh"))},
		{name: "unbalanced quote", notify: service.Notify{Master: secure + ` "open`},
			wantErr: fmt.Sprintf(`vrrp_instance VI_1: notify_master %q: unterminated " quote`, secure+` "open`)},
		{name: "sync group notify_fault", group: true, notify: service.Notify{Fault: insecure},
			wantErr: fmt.Sprintf("vrrp_sync_group G: notify_fault %q: %s", insecure, refused)},
		{name: "sync group secure", group: true, notify: service.Notify{Any: secure}},
		{name: "writable configuration", conf: conf, notify: service.Notify{Master: secure},
			wantErr: fmt.Sprintf("vrrp_instance VI_1: notify_master %q: refusing to run %s: configuration file: %s is writable by others (mode -rw-rw-rw-)", secure, secure, conf)},
		{name: "sync group, writable configuration", group: true, conf: conf, notify: service.Notify{Master: secure},
			wantErr: fmt.Sprintf("vrrp_sync_group G: notify_master %q: refusing to run %s: configuration file: %s is writable by others (mode -rw-rw-rw-)", secure, secure, conf)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			what := "vrrp_instance VI_1"
			if tt.group {
				what = "vrrp_sync_group G"
			}
			err := checkNotify(what, tt.notify, tt.conf)
			if got := errText(err); got != tt.wantErr {
				t.Errorf("error:\n %s\nwant:\n %s", got, tt.wantErr)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestRunNotifySplits: notify lines are split with keepalived's quoting,
// and notify gets "kind name state priority" after its own arguments.
func TestRunNotifySplits(t *testing.T) {
	rec := &recorder{}
	n := service.Notify{Any: `/etc/xlb/any.sh 'a b'`, Master: `/etc/xlb/m.sh "two words" x\ y`}
	runNotify(rec, n, "GROUP", "G", vrrp.StateMaster, 100)
	runNotify(rec, n, "GROUP", "G", vrrp.StateBackup, 100)
	want := [][]string{
		{"/etc/xlb/m.sh", "two words", "x y"},
		{"/etc/xlb/any.sh", "a b", "GROUP", "G", "MASTER", "100"},
		{"/etc/xlb/any.sh", "a b", "GROUP", "G", "BACKUP", "100"},
	}
	if diff := cmp.Diff(want, rec.takeRuns()); diff != "" {
		t.Errorf("scripts run (-want +got):\n%s", diff)
	}
}

// TestExecRunner runs real scripts and checks what a failure logs.
func TestExecRunner(t *testing.T) {
	const guard = 10 * time.Second
	tests := []struct {
		name     string
		runner   execRunner
		argv     []string
		needRoot bool
		want     []string // in the log line
	}{
		{name: "exit status and output", argv: []string{"sh", "-c", "echo oops; echo more >&2; exit 3"},
			want: []string{`msg="notify script failed"`, `err="exit status 3"`, `output="oops\nmore"`}},
		{name: "arguments", argv: []string{"sh", "-c", `echo "$1|$2"; exit 1`, "sh", "two words", "GROUP"},
			want: []string{`output="two words|GROUP"`}},
		{name: "output is bounded", argv: []string{"sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x; exit 1"},
			want: []string{"output=" + strings.Repeat("x", script.OutputLogged) + "\n"}},
		{name: "timeout", runner: execRunner{Timeout: 100 * time.Millisecond}, argv: []string{"sleep", "30"},
			want: []string{`err="stopped: context deadline exceeded"`}},
		{name: "user", runner: execRunner{User: "nobody"}, argv: []string{"sh", "-c", "id -u; exit 1"}, needRoot: true,
			want: []string{`output=65534`}},
		{name: "no program", argv: []string{"no-such-program-xlb"},
			want: []string{`executable file not found`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot {
				testutil.RequireRoot(t, "runs a script as another user")
			}
			var logs testutil.Buffer
			r := tt.runner
			r.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			r.Run(tt.argv)
			deadline := time.Now().Add(guard)
			for !strings.Contains(logs.String(), "\n") {
				if time.Now().After(deadline) {
					t.Fatal("no log line from a failing script")
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, w := range tt.want {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log %q lacks %q", logs.String(), w)
				}
			}
		})
	}
}

// TestNotifyUser: the real host runs notify scripts as the user it is
// given (TestSetLifecycle checks that each instance and group gives its
// own).
func TestNotifyUser(t *testing.T) {
	for _, user := range []string{"nobody nogroup", "root"} {
		if r, ok := system.scripts(user, quiet).(execRunner); !ok || r.User != user || r.Logger != quiet {
			t.Errorf("runner %#v, want an execRunner as %s logging to the given logger", r, user)
		}
	}
}

// TestNotifyScripts: the scripts started for the changes an instance
// reports from Init to Stop (package vrrp tests that it reports them):
// each state's own script, then notify with its arguments, nothing for
// Releasing, and nothing for a change resumed after a reload.
func TestNotifyScripts(t *testing.T) {
	n := service.Notify{Any: "/etc/xlb/any.sh", Master: "/etc/xlb/master.sh --up", Stop: "/etc/xlb/stop.sh"}
	rec := &recorder{}
	nt := notifier{run: rec, n: n, kind: "INSTANCE", name: "VI_1"}
	for _, e := range []vrrp.Event{
		{To: vrrp.StateBackup, Priority: 100},
		{To: vrrp.StateMaster, Priority: 100},
		{To: vrrp.StateReleasing, Priority: 100},
		{To: vrrp.StateStopped, Priority: 100},
		{To: vrrp.StateMaster, Priority: 120, Resumed: true},
	} {
		nt.changed(e.To, e.Priority, e.Resumed)
	}
	want := [][]string{
		{n.Any, "INSTANCE", "VI_1", "BACKUP", "100"},
		{"/etc/xlb/master.sh", "--up"},
		{n.Any, "INSTANCE", "VI_1", "MASTER", "100"},
		{n.Stop},
		{n.Any, "INSTANCE", "VI_1", "STOP", "100"},
	}
	if diff := cmp.Diff(want, rec.takeRuns()); diff != "" {
		t.Errorf("scripts run (-want +got):\n%s", diff)
	}
}

// recorder records the scripts it is asked to run.
type recorder struct {
	mu   sync.Mutex
	runs [][]string
}

func (r *recorder) Run(argv []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, argv)
}

func (r *recorder) takeRuns() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	runs := r.runs
	r.runs = nil
	return runs
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestExecRunnerPending: the scripts an execRunner starts are counted until
// they end, so that Set.Stop can wait for notify_stop before the process
// exits.
func TestExecRunnerPending(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "ran")
	var pending sync.WaitGroup
	execRunner{pending: &pending}.Run([]string{"sh", "-c", "sleep 0.2; touch " + mark})
	pending.Wait()
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("the script had not ended when the wait returned: %v", err)
	}
}
