package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlb-project/xlb/internal/service"
)

// keepalived gives a timed-out script this long between SIGTERM and
// SIGKILL (check_misc.c).
const defaultTermGrace = 2 * time.Second

// defaultScriptUser is the user keepalived runs scripts as when it exists
// and no user is configured.
const defaultScriptUser = "keepalived_script"

// probeMisc is MISC_CHECK: run misc_path; exit status 0 passes. With
// misc_dynamic, statuses 2-255 pass too and ask for weight status-2
// (keepalived's rule); any other status, a signal or the timeout fails.
func (p *DefaultProber) probeMisc(ctx context.Context, c service.Check) (Result, error) {
	argv, path, err := script(c)
	if err != nil {
		return Result{}, err
	}
	if err := checkScript(c, path); err != nil {
		return Result{}, err
	}
	cred, err := scriptCredential(c.User)
	if err != nil {
		return Result{}, fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Dir: "/"}
	// Its own process group, so that a timeout kills whatever the script
	// started, as keepalived does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		grace := p.TermGrace
		if grace <= 0 {
			grace = defaultTermGrace
		}
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-waited:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-waited
		}
		t.Stop()
		// Children that outlived the script's own exit.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return Result{}, fmt.Errorf("misc_path %q: %w", c.MiscPath, context.Cause(ctx))
	}
	if err == nil {
		return Result{}, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return Result{}, fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return Result{}, fmt.Errorf("misc_path %q: killed by signal %d (%s)", c.MiscPath, int(ws.Signal()), ws.Signal())
	}
	code := ee.ExitCode()
	if c.MiscDynamic && code >= 2 && code <= 255 {
		w := code - 2
		return Result{Weight: &w}, nil
	}
	return Result{}, fmt.Errorf("misc_path %q: exit status %d", c.MiscPath, code)
}

// script splits misc_path into arguments and finds the program.
func script(c service.Check) (argv []string, path string, err error) {
	argv, err = splitCommand(c.MiscPath)
	if err != nil {
		return nil, "", fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	if len(argv) == 0 {
		return nil, "", fmt.Errorf("misc_path is empty")
	}
	path = argv[0]
	if !strings.Contains(path, "/") {
		if path, err = exec.LookPath(path); err != nil {
			return nil, "", fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
		}
	}
	if path, err = filepath.Abs(path); err != nil {
		return nil, "", fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	return argv, path, nil
}

// CheckScriptSecurity applies keepalived's script security to a
// MISC_CHECK: the script, every directory on its path (before and after
// resolving symbolic links) and the configuration file that names it
// (c.Source.File, if known) must be owned by root and not writable by
// others, nor by a group other than root's; a directory with the sticky bit
// (like /tmp) may be writable. The script must be executable. Whoever could
// change any of them could otherwise run code as root. The prober checks
// before every run; callers can check when a configuration is loaded.
func CheckScriptSecurity(c service.Check) error {
	if c.Kind != service.CheckMisc {
		return nil
	}
	_, path, err := script(c)
	if err != nil {
		return err
	}
	return checkScript(c, path)
}

func checkScript(c service.Check, path string) error {
	refuse := func(err error) error {
		return fmt.Errorf("misc_path %q: refusing to run it: %w", c.MiscPath, err)
	}
	if f := c.Source.File; f != "" {
		if err := securePath(f, true); err != nil {
			return refuse(fmt.Errorf("configuration file: %w", err))
		}
	}
	if err := securePath(path, false); err != nil {
		return refuse(err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return refuse(err)
	}
	if real != path {
		if err := securePath(real, false); err != nil {
			return refuse(err)
		}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return refuse(err)
	}
	if !fi.Mode().IsRegular() {
		return refuse(fmt.Errorf("%s is not a regular file", real))
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return refuse(fmt.Errorf("%s is not executable", real))
	}
	return nil
}

// securePath checks path and each directory above it. With fileOnly, only
// the file itself is checked (a configuration file).
func securePath(path string, fileOnly bool) error {
	path = filepath.Clean(path)
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		path = abs
	}
	parts := []string{path}
	if !fileOnly {
		for p := filepath.Dir(path); ; p = filepath.Dir(p) {
			parts = append(parts, p)
			if p == "/" {
				break
			}
		}
	}
	for _, p := range parts {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := secureEntry(p, fi); err != nil {
			return err
		}
	}
	return nil
}

// secureEntry is keepalived's check_security rule for one path entry.
func secureEntry(p string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot read its owner", p)
	}
	if st.Uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, not root", p, st.Uid)
	}
	mode := fi.Mode()
	guarded := mode.IsRegular() || mode.IsDir() && mode&fs.ModeSticky == 0
	if !guarded {
		return nil
	}
	if mode.Perm()&0o002 != 0 {
		return fmt.Errorf("%s is writable by others (mode %s)", p, mode.Perm())
	}
	if st.Gid != 0 && mode.Perm()&0o020 != 0 {
		return fmt.Errorf("%s is writable by group %d (mode %s)", p, st.Gid, mode.Perm())
	}
	return nil
}

// scriptCredential returns who runs a script: the check's "user [group]",
// else keepalived's default user keepalived_script if it exists, else xlb's
// own user (nil).
func scriptCredential(spec string) (*syscall.Credential, error) {
	fields := strings.Fields(spec)
	if len(fields) == 0 {
		u, err := user.Lookup(defaultScriptUser)
		if err != nil {
			return nil, nil
		}
		return credential(u, "")
	}
	u, err := user.Lookup(fields[0])
	if err != nil {
		return nil, fmt.Errorf("script user: %w", err)
	}
	group := ""
	if len(fields) > 1 {
		group = fields[1]
	}
	return credential(u, group)
}

func credential(u *user.User, group string) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gidStr := u.Gid
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("script group: %w", err)
		}
		gidStr = g.Gid
	}
	gid, err := strconv.ParseUint(gidStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", u.Username, gidStr, err)
	}
	if int(uid) == os.Getuid() && int(gid) == os.Getgid() {
		return nil, nil
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// splitCommand splits a command line as keepalived does for misc_path:
// words separated by blanks, with single or double quotes grouping and a
// backslash escaping the next character.
func splitCommand(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\\' && quote != '\'':
			if i+1 == len(rs) {
				return nil, errors.New("ends with a backslash")
			}
			i++
			cur.WriteRune(rs[i])
			in = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote = r
			in = true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
