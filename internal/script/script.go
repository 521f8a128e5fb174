// Package script runs the command lines of a keepalived configuration
// (MISC_CHECK's misc_path, vrrp_script, notify scripts) the way keepalived
// does: split by its quoting rules, refused unless only root could have
// changed them, run as the configured user in a process group of their own,
// and stopped with SIGTERM and then SIGKILL when their time is up.
package script

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Split splits a script line into words as keepalived does: blanks
// separate words, single or double quotes group them, and a backslash
// outside single quotes takes the next character literally. Errors do not
// repeat the line; callers name it.
func Split(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word, possibly an empty quoted one
		quote rune
	)
	rs := []rune(line)
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

// program returns the absolute path of the program a script names: a name
// without a slash is looked up on PATH, as execvp would.
func program(name string) (string, error) {
	if name == "" {
		return "", errors.New("no program")
	}
	path := name
	if !strings.Contains(name, "/") {
		var err error
		if path, err = exec.LookPath(name); err != nil {
			return "", err
		}
	}
	return filepath.Abs(path)
}
