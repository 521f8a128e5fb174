package ha

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
)

// warnings records what runScript logs.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) Warn(msg string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, strings.TrimSuffix(fmt.Sprintln(append([]any{msg}, args...)...), "\n"))
}

func (w *warnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// TestRunScript runs real vrrp_scripts through runScript and checks the
// first verdict it reports: the line is split with keepalived's quoting,
// runs as the script's user, and a timeout stops the script's whole
// process group. The rise/fall counting has its own test (risefall).
func TestRunScript(t *testing.T) {
	const guard = 10 * time.Second
	tests := []struct {
		name     string
		script   string // $DIR: a fresh directory
		user     string
		timeout  time.Duration
		needRoot bool
		initFail bool
		carried  *bool // the verdict from before a reload
		want     bool
		wantLog  string
	}{
		{name: "success", script: "true", want: true},
		{name: "init_fail reports failed before the first run", script: "true", initFail: true, want: false},
		{name: "failure", script: "false", wantLog: "vrrp_script failing err exit status 1"},
		{name: "a verdict carried over a reload is reported first", script: "true", carried: new(false), want: false},
		{name: "a carried verdict overrides init_fail", script: "true", initFail: true, carried: new(true), want: true},
		{name: "keepalived quoting", script: `sh -c "exit 0"`, want: true},
		{name: "runs as its user", script: `sh -c '[ "$(id -u)" = 65534 ]'`, user: "nobody", needRoot: true, want: true},
		{name: "unknown user fails", script: "true", user: "no-such-user-xlb", wantLog: "unknown user no-such-user-xlb"},
		{name: "timeout stops the script and its children", timeout: time.Second,
			script:  `sh -c 'sleep 30 & echo $! > "$0"; wait' $DIR/child.pid`,
			wantLog: "vrrp_script failing err stopped: context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot {
				testutil.RequireRoot(t, "runs a script as another user")
			}
			dir := t.TempDir()
			sc := service.VRRPScript{
				Name:   "chk",
				Script: strings.ReplaceAll(tt.script, "$DIR", dir),
				User:   tt.user,
				// One run: the test stops runScript before the next.
				Interval: time.Hour,
				Timeout:  tt.timeout,
				Rise:     1,
				Fall:     1,
				InitFail: tt.initFail,
			}
			if sc.Timeout == 0 {
				sc.Timeout = guard
			}
			ctx, cancel := context.WithCancel(context.Background())
			set := &Set{cancel: cancel}
			if tt.carried != nil {
				set.verdicts = map[string]bool{scriptKey(sc): *tt.carried}
			}
			verdicts := make(chan bool, 1)
			log := &warnings{}
			argv, err := script.Split(sc.Script)
			if err != nil {
				t.Fatal(err)
			}
			set.runScript(ctx, sc, argv, func(good bool) { verdicts <- good }, log)
			select {
			case got := <-verdicts:
				if got != tt.want {
					t.Errorf("verdict %v, want %v", got, tt.want)
				}
			case <-time.After(guard):
				t.Error("no verdict")
			}
			set.Stop()
			if got := log.String(); tt.wantLog == "" && got != "" || !strings.Contains(got, tt.wantLog) {
				t.Errorf("logged %q, want %q", got, tt.wantLog)
			}
			pidfile := filepath.Join(dir, "child.pid")
			b, err := os.ReadFile(pidfile)
			if tt.timeout == 0 {
				return
			}
			if err != nil {
				t.Fatalf("the script did not start its child: %v", err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			deadline := time.Now().Add(guard)
			for !exited(pid) {
				if time.Now().After(deadline) {
					t.Fatalf("the script's child %d outlived the timeout", pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// exited reports whether pid has exited (a zombie counts: it will never
// run again).
func exited(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}
