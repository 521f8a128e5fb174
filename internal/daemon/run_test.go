package daemon

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPIRefusesALiveSocket: with a daemon answering on the socket, the
// API is not served over it. (Two daemons on one pin directory are kept
// apart by the directory's lock: see datapath.TestPinDirLocked and
// e2e.TestOnePinDirOneDaemon.)
func TestAPIRefusesALiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := &Daemon{opts: Options{Socket: sock}}
	srv, err := d.listenAPI()
	if err == nil {
		srv.close()
	}
	if err == nil || !strings.Contains(err.Error(), "another xlb daemon is listening") {
		t.Fatalf("serveAPI: %v, want a refusal naming the live daemon", err)
	}
}
