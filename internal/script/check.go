package script

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Check applies keepalived's script security to a script line before xlb
// runs it as root: the program, every directory on its path (both as
// written and after resolving symbolic links) and configFile, unless it is
// empty, must be owned by root and writable by nobody else, and the program
// must be an executable regular file. Group write is allowed only to root's
// group, and a sticky directory such as /tmp may be writable by anyone,
// since only a file's owner can replace it there. Whoever could change any
// of these could otherwise run code as root.
func Check(line, configFile string) error {
	argv, err := Split(line)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		return errors.New("no program")
	}
	path, err := program(argv[0])
	if err != nil {
		return err
	}
	refuse := func(err error) error {
		return fmt.Errorf("refusing to run %s: %w", path, err)
	}
	if configFile != "" {
		if err := secureFile(configFile); err != nil {
			return refuse(fmt.Errorf("configuration file: %w", err))
		}
	}
	if err := secureTree(path); err != nil {
		return refuse(err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return refuse(err)
	}
	if real != path {
		if err := secureTree(real); err != nil {
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

// secureTree checks path and every directory above it, without following
// a symbolic link at path itself: the link and its target are each checked
// by the caller.
func secureTree(path string) error {
	for p := path; ; p = filepath.Dir(p) {
		if err := secureFile(p); err != nil {
			return err
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// secureFile is keepalived's rule for one entry. Errors start with the
// path, so that callers can prefix what it is.
func secureFile(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		// The PathError names p already.
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot read its owner", p)
	}
	if st.Uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, not root", p, st.Uid)
	}
	mode := fi.Mode()
	// A symbolic link's own mode means nothing; a sticky directory only
	// lets owners rename or remove their own entries.
	if !mode.IsRegular() && !(mode.IsDir() && mode&fs.ModeSticky == 0) {
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
