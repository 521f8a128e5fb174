package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// binDirPrefix names the per-process directory of built binaries. The pid in
// the name lets a later process remove directories whose owner has exited:
// Go has no exit hook that would let a test binary clean up after itself.
const binDirPrefix = "xlb-testbin-"

var builds struct {
	mu   sync.Mutex
	dir  string
	pkgs map[string]*buildResult
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// BuildBinary builds the Go main package pkg (an import path, or a path
// relative to the repository root such as "./cmd/xlb") and returns the
// binary's path. Each package is built once per test process, however many
// tests ask for it, and a failed build fails every caller the same way.
func BuildBinary(tb testing.TB, pkg string) string {
	tb.Helper()
	return BuildBinaryWith(tb, pkg)
}

// BuildBinaryWith is BuildBinary with extra go build flags (-ldflags, say,
// for a second build of the same package that differs from the first).
func BuildBinaryWith(tb testing.TB, pkg string, flags ...string) string {
	tb.Helper()
	key := strings.Join(append([]string{pkg}, flags...), "\x00")
	builds.mu.Lock()
	if builds.pkgs == nil {
		builds.pkgs = make(map[string]*buildResult)
	}
	r, ok := builds.pkgs[key]
	if !ok {
		r = new(buildResult)
		builds.pkgs[key] = r
	}
	n := len(builds.pkgs)
	builds.mu.Unlock()

	r.once.Do(func() { r.path, r.err = build(pkg, flags, n) })
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.path
}

func build(pkg string, flags []string, n int) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := binDir()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	// Distinct packages may share a last element (cmd/xlb, internal/x/cmd/xlb).
	name := strings.NewReplacer("/", "_", ".", "_").Replace(strings.Trim(pkg, "./"))
	if name == "" {
		name = path.Base(root)
	}
	out := filepath.Join(dir, name)
	if len(flags) > 0 {
		out += "-" + strconv.Itoa(n)
	}
	// XLB_TEST_BUILDFLAGS adds go build flags, e.g. -race, so the daemon
	// the end-to-end tests run is checked for data races too.
	args := append([]string{"build"}, strings.Fields(os.Getenv("XLB_TEST_BUILDFLAGS"))...)
	args = append(args, flags...)
	cmd := exec.Command(goTool(), append(args, "-o", out, pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

func binDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		return builds.dir, nil
	}
	removeStaleBinDirs()
	dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	builds.dir = dir
	return dir, nil
}

// removeStaleBinDirs deletes binary directories of test processes that no
// longer run.
func removeStaleBinDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, m := range matches {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(m), binDirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(m)
		}
	}
}

// goTool prefers the go command that runs this test (GOROOT is set by
// `go test`), so the binaries are built by the same toolchain.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
