package api

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	srv, err := Listen(sock, Handlers{})
	if err == nil {
		srv.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "another xlb daemon is listening") {
		t.Fatalf("Listen: %v, want a refusal naming the live daemon", err)
	}
}

// TestServerRoundTrip: the client and the server agree on every call: a
// state, a rejected reload's lines, a stop that returns once the socket
// is gone.
func TestServerRoundTrip(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "xlb.sock")
	var srv *Server
	stopped := make(chan struct{})
	srv, err := Listen(sock, Handlers{
		State: func() (State, error) { return State{Config: "/etc/xlb.yaml"}, nil },
		Reload: func(context.Context) error {
			return errors.New("c:1: first problem\nc:2: second problem")
		},
		Stop: func() {
			go func() { srv.Close(); close(stopped) }()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	c := NewClient(sock)
	ctx := context.Background()
	if st, err := c.State(ctx); err != nil || st.Config != "/etc/xlb.yaml" {
		t.Errorf("State: %+v, %v", st, err)
	}
	err = c.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "c:1: first problem\nc:2: second problem") {
		t.Errorf("Reload: %v, want both problems, one a line", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Stop(sctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	<-stopped
}

// TestStopAnsweredByAFastDaemon: a daemon whose shutdown closes the API
// while `xlb stop`'s own request is still being answered (the Stop
// handler's caller is slower here than the shutdown) still gets its
// answer to the client, which then sees the socket go: no EOF.
func TestStopAnsweredByAFastDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "xlb.sock")
	var srv *Server
	closed := make(chan struct{})
	srv, err := Listen(sock, Handlers{
		Stop: func() {
			go func() { srv.Close(); close(closed) }()
			time.Sleep(50 * time.Millisecond) // the shutdown is already closing the server
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := NewClient(sock).Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	<-closed
}
