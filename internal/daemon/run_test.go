package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRefusesASecondDaemon: with a daemon answering on the socket, Run
// stops before it reads anything or touches a pin.
func TestRunRefusesASecondDaemon(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "xlb.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pins := filepath.Join(dir, "pins")
	err = Run(context.Background(), Options{ConfigPath: filepath.Join(dir, "missing.conf"), PinDir: pins, Socket: sock}, nil)
	if err == nil || !strings.Contains(err.Error(), "another xlb daemon is listening") {
		t.Fatalf("Run: %v, want a refusal naming the live daemon", err)
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		t.Errorf("pin directory touched: %v", err)
	}
}
