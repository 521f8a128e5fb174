package vrrp

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
)

// ScriptRunner runs notify scripts. Run must not block the caller: the
// state machine calls it with its lock held.
type ScriptRunner interface {
	Run(argv []string)
}

// ExecRunner runs each script in its own goroutine with a timeout and logs
// failures; keepalived likewise never waits for notify scripts.
type ExecRunner struct {
	Timeout time.Duration // 0 means script.NotifyTimeout
	// User runs the scripts, as keepalived's "user [group]"; empty means
	// keepalived_script if that user exists, else root.
	User   string
	Logger *slog.Logger
}

// Run starts argv and returns at once.
func (r ExecRunner) Run(argv []string) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = script.NotifyTimeout
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	script.Start(script.Command{Args: argv, User: r.User}, timeout, log, "notify script failed")
}

// checkNotify applies keepalived's script security to every script of n;
// what names the owner in errors.
func checkNotify(what string, n service.Notify, configFile string) error {
	for _, s := range []struct{ kw, line string }{
		{"notify", n.Any}, {"notify_master", n.Master}, {"notify_backup", n.Backup},
		{"notify_fault", n.Fault}, {"notify_stop", n.Stop},
	} {
		if s.line == "" {
			continue
		}
		if err := script.Check(s.line, configFile); err != nil {
			return fmt.Errorf("%s: %s %q: %w", what, s.kw, s.line, err)
		}
	}
	return nil
}

// runNotify starts the scripts keepalived runs when kind ("INSTANCE" or
// "GROUP") name enters state: the state's own script as written, then
// `notify` with the arguments "kind name state priority" after its own.
func runNotify(r ScriptRunner, n service.Notify, kind, name string, state State, priority int) {
	var own string
	switch state {
	case StateMaster:
		own = n.Master
	case StateBackup:
		own = n.Backup
	case StateFault:
		own = n.Fault
	case StateStopped:
		own = n.Stop
	default:
		return
	}
	// checkNotify has refused lines that do not split.
	if argv, err := script.Split(own); err == nil && len(argv) > 0 {
		r.Run(argv)
	}
	if argv, err := script.Split(n.Any); err == nil && len(argv) > 0 {
		r.Run(append(argv, kind, name, state.String(), strconv.Itoa(priority)))
	}
}
