package ha

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/vrrp"
)

// scriptRunner runs notify scripts. Run must not block the caller: the
// state machine's events, which start the scripts, come with its lock
// held.
type scriptRunner interface {
	Run(argv []string)
}

// execRunner runs each script in its own goroutine with a timeout and logs
// failures; keepalived likewise never waits for notify scripts.
type execRunner struct {
	Timeout time.Duration // 0 means script.NotifyTimeout
	// User runs the scripts, as keepalived's "user [group]"; empty means
	// keepalived_script if that user exists, else root.
	User   string
	Logger *slog.Logger
	// pending, if set, counts the scripts until they end.
	pending *sync.WaitGroup
}

// Run starts argv and returns at once.
func (r execRunner) Run(argv []string) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = script.NotifyTimeout
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	done := script.Start(script.Command{Args: argv, User: r.User}, timeout, log, "notify script failed")
	if r.pending != nil {
		r.pending.Add(1)
		go func() {
			<-done
			r.pending.Done()
		}()
	}
}

// notifier starts the notify scripts of one vrrp_instance or
// vrrp_sync_group when the state machine reports a change.
type notifier struct {
	run  scriptRunner
	n    service.Notify
	kind string // "INSTANCE" or "GROUP", as keepalived's notify hears it
	name string
}

// changed starts the scripts for a change to state at priority. A resumed
// change (vrrp.Event.Resumed) starts none: after a reload the instance
// kept its predecessor's state, and nothing changed for the scripts' world.
func (nt notifier) changed(to vrrp.State, priority int, resumed bool) {
	if !resumed {
		runNotify(nt.run, nt.n, nt.kind, nt.name, to, priority)
	}
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
func runNotify(r scriptRunner, n service.Notify, kind, name string, state vrrp.State, priority int) {
	var own string
	switch state {
	case vrrp.StateMaster:
		own = n.Master
	case vrrp.StateBackup:
		own = n.Backup
	case vrrp.StateFault:
		own = n.Fault
	case vrrp.StateStopped:
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
