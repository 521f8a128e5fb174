package script

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/testutil"
)

// shortTimeout bounds the runs that are meant to be stopped; tests assert
// what happened to them, never how long it took.
const shortTimeout = 300 * time.Millisecond

// guard bounds every wait for something that must happen, so that a bug
// fails the test instead of hanging it.
const guard = 10 * time.Second

// shell returns the arguments that run body as a shell script from a file
// in a fresh directory, followed by args.
func shell(t *testing.T, body string, args ...string) []string {
	t.Helper()
	path := testutil.WriteFile(t, filepath.Join(t.TempDir(), "script.sh"), "#!/bin/sh\n"+body+"\n", 0o700)
	return append([]string{path}, args...)
}

// run runs c with a guard against a Run that never returns.
func run(t *testing.T, ctx context.Context, c Command) (Status, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, guard)
	defer cancel()
	return c.Run(ctx)
}

func TestRunStatus(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		args    []string
		want    Status
		wantErr string // of Status.Err; empty: nil
	}{
		{name: "exit 0", body: "exit 0", want: Status{Code: 0}},
		{name: "exit 1", body: "exit 1", want: Status{Code: 1}, wantErr: "exit status 1"},
		{name: "exit 255", body: "exit 255", want: Status{Code: 255}, wantErr: "exit status 255"},
		{name: "killed by a signal", body: "kill -KILL $$", want: Status{Code: -1, Signal: syscall.SIGKILL}, wantErr: "killed by signal 9 (killed)"},
		{name: "arguments are passed as split", body: `[ "$1" = rs1 ] && [ "$2" = "two words" ] && [ $# = 2 ]`,
			args: []string{"rs1", "two words"}},
		{name: "wrong arguments fail", body: `[ "$1" = rs1 ]`, args: []string{"rs2"}, want: Status{Code: 1}, wantErr: "exit status 1"},
		{name: "runs in /", body: `[ "$(pwd)" = / ]`},
		{name: "in a process group of its own", body: `[ "$(ps -o pgid= $$ | tr -d ' ')" = $$ ]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := run(t, context.Background(), Command{Args: shell(t, tt.body, tt.args...)})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if diff := cmp.Diff(tt.want, st); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if got := errString(st.Err()); got != tt.wantErr {
				t.Errorf("Status.Err() = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestRunFindsPrograms(t *testing.T) {
	tests := []struct {
		args    []string
		want    Status
		wantErr string
	}{
		{args: []string{"true"}, want: Status{Code: 0}},
		{args: []string{"false"}, want: Status{Code: 1}},
		{args: []string{"sh", "-c", "exit 7"}, want: Status{Code: 7}},
		{args: []string{"no-such-program-xlb"}, want: Status{Code: -1}, wantErr: `exec: "no-such-program-xlb": executable file not found in $PATH`},
		{args: []string{"/no/such/dir/check"}, want: Status{Code: -1}, wantErr: "fork/exec /no/such/dir/check: no such file or directory"},
		{args: nil, want: Status{Code: -1}, wantErr: "no program"},
	}
	for _, tt := range tests {
		st, err := run(t, context.Background(), Command{Args: tt.args})
		if got := errString(err); got != tt.wantErr {
			t.Errorf("Run(%q) error %q, want %q", tt.args, got, tt.wantErr)
		}
		if diff := cmp.Diff(tt.want, st); diff != "" {
			t.Errorf("Run(%q) status (-want +got):\n%s", tt.args, diff)
		}
	}
}

// gone reports whether pid has exited (a zombie counts: it will never run
// again).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// readPID reads the pid a script wrote to path and makes sure the process
// does not outlive the test.
func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the script did not start its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

func TestRunStopsTheProcessGroup(t *testing.T) {
	cause := errors.New("misc_timeout")
	tests := []struct {
		name string
		body string
		want Status
		// wantTerm: the script's child saw SIGTERM (it leaves "$1.term").
		wantTerm bool
	}{
		{
			name: "SIGTERM goes to the script's whole process group",
			// The child writes its own pid once its trap is set: a pid
			// written by the parent could let the stop arrive before it.
			body: `trap 'wait; exit 1' TERM
sh -c 'trap "touch \"\$0.term\"; exit 0" TERM; echo $$ > "$0"; sleep 30 & wait' "$1" &
wait`,
			want:     Status{Code: 1},
			wantTerm: true,
		},
		{
			name: "a script that ignores SIGTERM is killed",
			body: `trap '' TERM; sleep 30 & echo $! > "$1"; wait; wait`,
			want: Status{Code: -1, Signal: syscall.SIGKILL},
		},
		{
			name: "children left by a script that exits on SIGTERM are killed",
			body: `sh -c 'trap "" TERM; echo $$ > "$0"; exec sleep 30' "$1" & wait`,
			want: Status{Code: -1, Signal: syscall.SIGTERM},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "child.pid")
			args := shell(t, tt.body, pidfile)
			ctx, cancel := context.WithCancelCause(context.Background())
			started := make(chan struct{})
			go func() {
				// Stop the script once it has started its child.
				defer cancel(cause)
				deadline := time.Now().Add(guard)
				for time.Now().Before(deadline) {
					if b, err := os.ReadFile(pidfile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				close(started)
			}()
			st, err := run(t, ctx, Command{Args: args, Grace: shortTimeout})
			<-started
			if !errors.Is(err, cause) {
				t.Fatalf("Run error %v, want one wrapping the context's cause", err)
			}
			if diff := cmp.Diff(tt.want, st); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			pid := readPID(t, pidfile)
			// Run has sent the whole group SIGKILL; the child dies as
			// soon as the kernel delivers it.
			deadline := time.Now().Add(guard)
			for !gone(pid) {
				if time.Now().After(deadline) {
					t.Fatalf("the script's child %d outlived the stop", pid)
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

// TestRunGrace: a stopped script has Grace to finish its SIGTERM handler
// (here a cleanup that takes 200 ms) before SIGKILL.
func TestRunGrace(t *testing.T) {
	tests := []struct {
		grace     time.Duration
		wantClean bool
		want      Status
	}{
		{grace: time.Nanosecond, want: Status{Code: -1, Signal: syscall.SIGKILL}},
		{grace: guard, wantClean: true, want: Status{Code: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.grace.String(), func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready")
			args := shell(t, `trap 'sleep 0.2; touch "$1.clean"; exit 0' TERM
touch "$1"
while :; do sleep 0.05; done`, ready)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				defer cancel()
				for deadline := time.Now().Add(guard); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if _, err := os.Stat(ready); err == nil {
						return
					}
				}
			}()
			st, err := run(t, ctx, Command{Args: args, Grace: tt.grace})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run error %v, want context.Canceled", err)
			}
			if diff := cmp.Diff(tt.want, st); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			_, err = os.Stat(ready + ".clean")
			if got := err == nil; got != tt.wantClean {
				t.Errorf("SIGTERM handler finished: %v, want %v", got, tt.wantClean)
			}
		})
	}
}

func TestRunDoneContextStartsNothing(t *testing.T) {
	ran := filepath.Join(t.TempDir(), "ran")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := Command{Args: []string{"touch", ran}}.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run error %v, want context.Canceled", err)
	}
	if diff := cmp.Diff(Status{Code: -1}, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the script ran")
	}
}

// TestRunLeavesChildrenOfAFinishedScript: a script that exits by itself
// may leave a daemon behind (a notify script that starts a service).
func TestRunLeavesChildrenOfAFinishedScript(t *testing.T) {
	for _, output := range []bool{false, true} {
		t.Run("output captured "+strconv.FormatBool(output), func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "child.pid")
			var out bytes.Buffer
			c := Command{Args: shell(t, `echo started; sleep 30 & echo $! > "$1"`, pidfile), Grace: shortTimeout}
			if output {
				// The child holds the output pipe open: Run must not
				// wait for it.
				c.Output = &out
			}
			st, err := run(t, context.Background(), c)
			if err != nil || st.Err() != nil {
				t.Fatalf("Run: %v, %v", st, err)
			}
			if pid := readPID(t, pidfile); gone(pid) {
				t.Errorf("the script's child %d was stopped", pid)
			}
			if want := map[bool]string{true: "started\n"}[output]; out.String() != want {
				t.Errorf("output %q, want %q", out.String(), want)
			}
		})
	}
}

func TestRunOutput(t *testing.T) {
	var out bytes.Buffer
	st, err := run(t, context.Background(), Command{Args: shell(t, `echo out; echo err >&2; exit 3`), Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Status{Code: 3}, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("out\nerr\n", out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestRunUser(t *testing.T) {
	// ids prints who a script runs as: uid, gid and every group, so that
	// root's supplementary groups would show.
	ids := []string{"sh", "-c", "id -u; id -g; id -G"}
	b, err := exec.Command(ids[0], ids[1:]...).Output()
	if err != nil {
		t.Fatal(err)
	}
	selfIDs := string(b)
	self, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// With no user, keepalived runs scripts as keepalived_script when
	// that user exists.
	defaultIDs := selfIDs
	if u, err := user.Lookup(defaultUser); err == nil {
		defaultIDs = u.Uid + "\n" + u.Gid + "\n" + u.Gid + "\n"
	}
	tests := []struct {
		user     string
		needRoot bool
		want     string // what ids printed
		wantErr  string
	}{
		{user: "", want: defaultIDs, needRoot: defaultIDs != selfIDs},
		{user: self.Username, want: selfIDs},
		{user: "nobody", want: "65534\n65534\n65534\n", needRoot: true},
		{user: "nobody root", want: "65534\n0\n0\n", needRoot: true},
		{user: " nobody\tnogroup ", want: "65534\n65534\n65534\n", needRoot: true},
		{user: "no-such-user-xlb", wantErr: "script user no-such-user-xlb: user: unknown user no-such-user-xlb"},
		{user: "nobody no-such-group-xlb", wantErr: "script user nobody: group no-such-group-xlb: group: unknown group no-such-group-xlb"},
		{user: "nobody nogroup extra", wantErr: `script user "nobody nogroup extra": want "user [group]"`},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.user), func(t *testing.T) {
			if tt.needRoot {
				needRoot(t, "only root runs scripts as another user")
			}
			var out bytes.Buffer
			st, err := run(t, context.Background(), Command{Args: ids, User: tt.user, Output: &out})
			if got := errString(err); got != tt.wantErr {
				t.Fatalf("Run as %q error %q, want %q", tt.user, got, tt.wantErr)
			}
			if err != nil {
				return
			}
			if st.Err() != nil {
				t.Errorf("Run as %q: %v", tt.user, st)
			}
			if diff := cmp.Diff(tt.want, out.String()); diff != "" {
				t.Errorf("Run as %q: ids (-want +got):\n%s", tt.user, diff)
			}
		})
	}
}
