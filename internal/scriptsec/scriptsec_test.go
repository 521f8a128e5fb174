package scriptsec

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/xlb-project/xlb/internal/service"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestCheckScripts: a configuration with an insecure MISC_CHECK or
// notify_up/notify_down script is refused at load, naming the place, the
// service and the backend.
func TestCheckScripts(t *testing.T) {
	testutil.RequireRoot(t, "script security wants root-owned scripts")
	dir := t.TempDir()
	testutil.Chmod(t, dir, 0o755)
	mk := func(name string, mode os.FileMode) string {
		return testutil.WriteFile(t, filepath.Join(dir, name), "#!/bin/sh\nexit 0\n", mode)
	}
	secure, insecure := mk("ok.sh", 0o755), mk("open.sh", 0o777)
	conf := mk("keepalived.conf", 0o644)
	cfg := func(path string) *service.Config {
		return &service.Config{Services: []service.Service{{
			VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: service.TCP,
			Backends: []service.Backend{
				{Addr: netip.MustParseAddr("198.51.100.11"), Port: 80, Weight: 1, Checks: []service.Check{
					{Kind: service.CheckTCP, Source: service.Pos{File: conf, Line: 7}},
				}},
				{Addr: netip.MustParseAddr("198.51.100.12"), Port: 80, Weight: 1, Checks: []service.Check{
					{Kind: service.CheckMisc, MiscPath: path + " --quiet", Source: service.Pos{File: conf, Line: 12}},
				}},
				{Addr: netip.MustParseAddr("198.51.100.13"), Port: 80, Weight: 1, NotifyDown: path + " rs3",
					Source: service.Pos{File: conf, Line: 20}},
			},
		}}}
	}
	if err := Check(cfg(secure)); err != nil {
		t.Errorf("secure script refused: %v", err)
	}
	err := Check(cfg(insecure))
	want := fmt.Sprintf(`%s:12: service 192.0.2.10:80/tcp: backend 198.51.100.12:80: misc_path "%s --quiet": refusing to run %s: %s is writable by others (mode -rwxrwxrwx)`, conf, insecure, insecure, insecure) +
		"\n" + fmt.Sprintf(`%s:20: service 192.0.2.10:80/tcp: backend 198.51.100.13:80: notify_down "%s rs3": refusing to run %s: %s is writable by others (mode -rwxrwxrwx)`, conf, insecure, insecure, insecure)
	if err == nil || err.Error() != want {
		t.Errorf("error:\n %v\nwant:\n %s", err, want)
	}
}
