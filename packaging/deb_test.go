// Package packaging holds the Debian package's files (nfpm.yaml, the
// maintainer script, /etc/default/xlb, the copyright) and the test that
// builds it and checks it as Debian would.
package packaging

import (
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestDeb runs `make deb` and checks the package: its files, its
// conffiles, maintainer scripts that enable and start nothing, a man page,
// a unit systemd accepts, the version, and lintian's verdict.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and the package (-short)")
	}
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Skip("lintian not installed (Debian package lintian; make deps installs it)")
	}
	for _, tool := range []string{"make", "dpkg-deb", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	root := testutil.MustRepoRoot(t)
	out := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	run("make", "deb", "DEB_OUT="+out, "GO="+goTool())
	debs, _ := filepath.Glob(filepath.Join(out, "xlb_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one xlb_<version>_amd64.deb", debs)
	}
	deb := debs[0]

	contents := run("dpkg-deb", "--contents", deb)
	for _, want := range []string{"./usr/sbin/xlb", "./lib/systemd/system/xlb.service", "./etc/xlb/keepalived.conf",
		"./etc/default/xlb", "./usr/share/man/man8/xlb.8.gz", "./usr/share/doc/xlb/copyright", "./usr/share/doc/xlb/changelog.gz"} {
		if !strings.Contains(contents, want+"\n") {
			t.Errorf("the package has no %s:\n%s", want, contents)
		}
	}
	if conff := run("dpkg-deb", "--info", deb, "conffiles"); !strings.Contains(conff, "/etc/xlb/keepalived.conf") || !strings.Contains(conff, "/etc/default/xlb") {
		t.Errorf("conffiles: %q, want /etc/xlb/keepalived.conf and /etc/default/xlb", conff)
	}

	tree := t.TempDir()
	run("dpkg-deb", "-x", deb, tree)
	ctrl := t.TempDir()
	run("dpkg-deb", "-e", deb, ctrl)
	scripts, _ := filepath.Glob(filepath.Join(ctrl, "*inst"))
	scripts2, _ := filepath.Glob(filepath.Join(ctrl, "*rm"))
	for _, s := range append(scripts, scripts2...) {
		b, _ := os.ReadFile(s)
		for _, bad := range []string{"systemctl", "deb-systemd-helper", "deb-systemd-invoke", "invoke-rc.d", "update-rc.d"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("maintainer script %s calls %s: installing must enable and start nothing", filepath.Base(s), bad)
			}
		}
	}

	bin := filepath.Join(tree, "usr", "sbin", "xlb")
	ver := strings.TrimSpace(run(bin, "version"))
	commit := strings.TrimSpace(run("git", "rev-parse", "HEAD"))
	if !strings.Contains(ver, commit) {
		t.Errorf("xlb version of the packaged binary: %q, want commit %s", ver, commit)
	}
	f, err := os.Open(filepath.Join(tree, "usr", "share", "man", "man8", "xlb.8.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	man, _ := io.ReadAll(zr)
	// The page is the CLI's own help: every command and its flags.
	for _, want := range []string{".TH XLB 8", ".SS drain", "\\-wait", ".SS run", "\\-metrics"} {
		if !strings.Contains(string(man), want) {
			t.Errorf("xlb.8 lacks %q", want)
		}
	}

	// systemd checks the unit's executables exist: point it at the
	// packaged binary rather than the host's /usr/sbin.
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		unit, err := os.ReadFile(filepath.Join(tree, "lib", "systemd", "system", "xlb.service"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(unit), "ExecStart=/usr/sbin/xlb run") {
			t.Errorf("the packaged unit does not run /usr/sbin/xlb:\n%s", unit)
		}
		local := filepath.Join(t.TempDir(), "xlb.service")
		testutil.WriteFile(t, local, strings.ReplaceAll(string(unit), "/usr/sbin/xlb", bin), 0o644)
		if b, err := exec.Command("systemd-analyze", "verify", local).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, b)
		}
	} else {
		t.Log("systemd-analyze not installed: unit not verified")
	}

	// Warnings and errors fail; the informational tags are listed.
	b, err := exec.Command("lintian", "--fail-on", "error,warning", deb).CombinedOutput()
	var tags []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "E:") || strings.HasPrefix(l, "W:") {
			tags = append(tags, l)
		}
	}
	if err != nil || len(tags) > 0 {
		t.Errorf("lintian: %v\n%s", err, b)
	}
}

// goTool is the go command running this test, so that make builds with
// the same toolchain.
func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
