package testutil

import (
	"os"
	"testing"
)

// WriteFile writes body to path with exactly mode, whatever the umask,
// and returns path; script-security tests depend on the mode bits.
func WriteFile(tb testing.TB, path, body string, mode os.FileMode) string {
	tb.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		tb.Fatal(err)
	}
	Chmod(tb, path, mode)
	return path
}

// Chmod sets the mode of path.
func Chmod(tb testing.TB, path string, mode os.FileMode) {
	tb.Helper()
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatal(err)
	}
}

// Chown sets the owner of path itself, not of what a symbolic link names.
func Chown(tb testing.TB, path string, uid, gid int) {
	tb.Helper()
	if err := os.Lchown(path, uid, gid); err != nil {
		tb.Fatal(err)
	}
}
