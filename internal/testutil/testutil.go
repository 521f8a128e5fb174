// Package testutil holds what xlb's tests share: root checks, the network
// namespace topology of scripts/topology.sh, running commands and Go code
// inside its hosts, building the repository's binaries once per test
// process, and hand-written packet builders for data path tests.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// RequireRoot skips the test unless it runs as root, saying why (what the
// test does that needs root), so an unprivileged `go test ./...` passes and
// still shows what it did not run.
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: " + why + " (run go test as root)")
	}
}

// netnsReason is why the namespace helpers need root.
const netnsReason = "creates network namespaces, sets sysctls and attaches XDP programs"

// RepoRoot returns the directory holding go.mod, found by walking up from
// the working directory, which `go test` sets to the package's directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find repository root: %w", err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("find repository root: no go.mod above %s", dir)
		}
		d = parent
	}
}

// MustRepoRoot is RepoRoot for tests: it fails the test on error.
func MustRepoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return root
}
