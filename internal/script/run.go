package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultGrace is how long keepalived lets a timed-out script handle
// SIGTERM before it sends SIGKILL.
const defaultGrace = 2 * time.Second

// defaultUser runs scripts that name no user, when it exists, so that an
// administrator can keep scripts away from root as keepalived allows.
const defaultUser = "keepalived_script"

// Command is one script to run.
type Command struct {
	// Args is the script line split by Split. Args[0] is the program; a
	// name without a slash is looked up on PATH.
	Args []string
	// User is keepalived's "user [group]". Empty means keepalived_script
	// if that user exists, else xlb's own user (root). A group omitted
	// means the user's primary group.
	User string
	// Grace is how long a script whose context is done has between
	// SIGTERM and SIGKILL; zero means keepalived's 2 seconds.
	Grace time.Duration
	// Output receives the script's standard output and error; nil
	// discards them, as keepalived does.
	Output io.Writer
}

// Status is how a script ended.
type Status struct {
	// Code is the exit status, or -1 when the script did not exit by
	// itself (killed by a signal, or never started).
	Code int
	// Signal is the signal that killed the script, if one did.
	Signal syscall.Signal
}

// String describes the status as a log line would.
func (s Status) String() string {
	if s.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%s)", int(s.Signal), s.Signal)
	}
	return "exit status " + strconv.Itoa(s.Code)
}

// Err returns nil for exit status 0 and otherwise an error describing the
// status, for callers to whom anything but success is a failure.
func (s Status) Err() error {
	if s.Code == 0 && s.Signal == 0 {
		return nil
	}
	return errors.New(s.String())
}

// Run runs the script in a process group of its own, with "/" as its
// working directory, and waits for it. When ctx is done first, the whole
// group gets SIGTERM and, after Grace, SIGKILL, so that nothing the script
// started outlives it; Run then returns an error wrapping ctx's cause.
// Run also fails when the script cannot start (unknown user, no such
// program). Otherwise Status tells how the script exited: a script that
// fails is not an error of Run. Children that a script leaves running
// when it exits by itself are left alone (a notify script may start a
// daemon).
func (c Command) Run(ctx context.Context) (Status, error) {
	notRun := Status{Code: -1}
	if err := context.Cause(ctx); err != nil {
		return notRun, fmt.Errorf("not started: %w", err)
	}
	if len(c.Args) == 0 {
		return notRun, errors.New("no program")
	}
	path, err := program(c.Args[0])
	if err != nil {
		return notRun, err
	}
	cred, err := credential(c.User)
	if err != nil {
		return notRun, err
	}
	grace := c.Grace
	if grace <= 0 {
		grace = defaultGrace
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        c.Args,
		Dir:         "/",
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: cred},
		// A child left running with the output pipe open would
		// otherwise hold Wait after the script has exited.
		WaitDelay: grace,
	}
	if c.Output != nil {
		cmd.Stdout, cmd.Stderr = c.Output, c.Output
	}
	if err := cmd.Start(); err != nil {
		return notRun, err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		stop(cmd.Process.Pid, grace, waited)
		return status(cmd.ProcessState), fmt.Errorf("stopped: %w", context.Cause(ctx))
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
		return notRun, err
	}
	return status(cmd.ProcessState), nil
}

// stop ends the process group pgid: SIGTERM, then SIGKILL once the leader
// has had grace to exit. It returns when the leader has been reaped.
func stop(pgid int, grace time.Duration, waited <-chan error) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-waited:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-waited
	}
	// The leader may have exited on SIGTERM and left children behind;
	// the group lives on as long as they do.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func status(ps *os.ProcessState) Status {
	if ps == nil {
		return Status{Code: -1}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Status{Code: -1, Signal: ws.Signal()}
	}
	return Status{Code: ps.ExitCode()}
}

// credential returns who runs a script: spec's "user [group]", else
// keepalived_script if it exists, else xlb's own user (nil, as it is when
// spec names xlb's own user and group).
func credential(spec string) (*syscall.Credential, error) {
	fields := strings.Fields(spec)
	if len(fields) > 2 {
		return nil, fmt.Errorf("script user %q: want \"user [group]\"", spec)
	}
	if len(fields) == 0 {
		u, err := user.Lookup(defaultUser)
		if err != nil {
			return nil, nil
		}
		return userCredential(u, "")
	}
	u, err := user.Lookup(fields[0])
	if err != nil {
		return nil, fmt.Errorf("script user %s: %w", fields[0], err)
	}
	group := ""
	if len(fields) == 2 {
		group = fields[1]
	}
	return userCredential(u, group)
}

func userCredential(u *user.User, group string) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("script user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gidStr := u.Gid
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("script user %s: group %s: %w", u.Username, group, err)
		}
		gidStr = g.Gid
	}
	gid, err := strconv.ParseUint(gidStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("script user %s: gid %q: %w", u.Username, gidStr, err)
	}
	if int(uid) == os.Getuid() && int(gid) == os.Getgid() {
		return nil, nil
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
