package vrrp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	Timeout time.Duration // 0 means 30 s
	Logger  *slog.Logger
}

// Run starts argv and returns at once.
func (r ExecRunner) Run(argv []string) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			log.Warn("notify script failed", "argv", argv, "err", err, "output", strings.TrimSpace(string(out)))
		}
	}()
}

// CheckScript applies keepalived's script security to the program a
// script line names: the file must exist, be owned by root and not be
// writable by group or others, and no directory above it may let a
// non-root user replace it (a sticky directory such as /tmp is fine, as
// only the owner may rename or remove the file there).
func CheckScript(line string) error {
	argv := strings.Fields(line)
	if len(argv) == 0 {
		return errors.New("empty script")
	}
	path := argv[0]
	if !filepath.IsAbs(path) {
		lp, err := exec.LookPath(path)
		if err != nil {
			return fmt.Errorf("script %s: %w", path, err)
		}
		path = lp
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("script %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("script %s: not a regular file", path)
	}
	if err := secure(path, st, false); err != nil {
		return err
	}
	if st.Mode().Perm()&0o100 == 0 {
		return fmt.Errorf("script %s: not executable by its owner", path)
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		dst, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("script %s: %w", path, err)
		}
		if err := secure(dir, dst, true); err != nil {
			return fmt.Errorf("script %s: %w", path, err)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

func secure(path string, st fs.FileInfo, dir bool) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot read its owner", path)
	}
	if sys.Uid != 0 {
		return fmt.Errorf("insecure %s: owned by uid %d, not root", path, sys.Uid)
	}
	if st.Mode().Perm()&0o022 != 0 && !(dir && st.Mode()&fs.ModeSticky != 0) {
		return fmt.Errorf("insecure %s: writable by group or others (mode %v)", path, st.Mode().Perm())
	}
	return nil
}

// checkNotify checks every script of n; what names the owner in errors.
func checkNotify(what string, n service.Notify) error {
	for _, s := range []struct{ kw, line string }{
		{"notify", n.Any}, {"notify_master", n.Master}, {"notify_backup", n.Backup},
		{"notify_fault", n.Fault}, {"notify_stop", n.Stop},
	} {
		if s.line == "" {
			continue
		}
		if err := CheckScript(s.line); err != nil {
			return fmt.Errorf("%s: %s: %w", what, s.kw, err)
		}
	}
	return nil
}

// runNotify starts the scripts keepalived runs when kind ("INSTANCE" or
// "GROUP") name enters state: the state's own script as written, then
// `notify` with the arguments "kind name state priority".
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
	if own != "" {
		r.Run(strings.Fields(own))
	}
	if n.Any != "" {
		r.Run(append(strings.Fields(n.Any), kind, name, state.String(), strconv.Itoa(priority)))
	}
}
