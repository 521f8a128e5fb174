package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve answers HTTP on httpLn and echoes on echoLn (either may be nil)
// until ctx ends or a listener fails, then closes every connection: run on
// listeners the test chose.
func serve(ctx context.Context, name string, httpLn, echoLn net.Listener) error {
	s := newServer(name)
	defer s.shutdown()
	_, err := s.accept(ctx, httpLn, echoLn, nil)
	return err
}

func TestServe(t *testing.T) {
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "rs9", httpLn, echoLn) }()

	t.Run("http", func(t *testing.T) {
		// A client with a known local address, to check the server
		// reports the peer it saw.
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
		dialer := &net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
		var seen string
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				seen = c.LocalAddr().String()
			}
			return c, err
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + httpLn.Addr().String() + "/any/path")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("rs9 %s\n", seen); string(body) != want {
			t.Errorf("body = %q, want %q", body, want)
		}
	})

	t.Run("download", func(t *testing.T) {
		for _, n := range []int{0, 1, 251, 100000} {
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://%s/bytes/%d", httpLn.Addr(), n))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Server") != "rs9" {
				t.Errorf("/bytes/%d: %s, X-Server %q; want 200 OK from rs9", n, resp.Status, resp.Header.Get("X-Server"))
			}
			want := make([]byte, n)
			for i := range want {
				want[i] = byte(i % 251)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("/bytes/%d: got %d bytes, not the pattern of %d", n, len(body), n)
			}
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/bytes/%d", httpLn.Addr(), maxDownload+1))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("/bytes/%d: %s, want 400", maxDownload+1, resp.Status)
		}
	})

	t.Run("echo", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", echoLn.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		for _, line := range []string{"one\n", strings.Repeat("x", 100000) + "\n", "three\n"} {
			if _, err := io.WriteString(c, line); err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if got != line {
				t.Errorf("echoed %d bytes, want the %d sent", len(got), len(line))
			}
		}
	})

	// An open echo connection must not keep the server from stopping.
	c, err := net.Dial("tcp", echoLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on echo connection after shutdown: %v, want EOF", err)
	}
}

func TestRunNeedsAListener(t *testing.T) {
	if err := run(context.Background(), "rs9", "", "", io.Discard, nil); err == nil {
		t.Error("run with no listeners: no error")
	}
}

// TestPauseAndResume closes and reopens the listeners under an established
// echo connection: while paused new connections are refused and the old
// one keeps echoing; after the resume both ports take connections again.
func TestPauseAndResume(t *testing.T) {
	httpAddr, echoAddr := freePort(t), freePort(t)
	pr, pw := io.Pipe()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	listen := make(chan bool)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, "rs9", httpAddr, echoAddr, pw, listen) }()
	t.Cleanup(func() {
		cancel()
		pr.Close()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	expectLine := func(want string) {
		t.Helper()
		select {
		case got, ok := <-lines:
			if !ok {
				t.Fatalf("waiting for %q: output ended", want)
			}
			if got != want {
				t.Fatalf("printed %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("printed nothing in 10s, want %q", want)
		}
	}
	expectLine("ready")

	old, err := net.DialTimeout("tcp", echoAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.SetDeadline(time.Now().Add(10 * time.Second))
	echo := func(what string) {
		t.Helper()
		msg := what + "\n"
		if _, err := io.WriteString(old, msg); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(old, got); err != nil || string(got) != msg {
			t.Fatalf("%s: echoed %q, %v; want %q", what, got, err, msg)
		}
	}
	echo("before the pause")

	listen <- true // already listening: ignored
	echo("after a redundant resume")
	listen <- false
	expectLine("paused")
	for _, addr := range []string{httpAddr, echoAddr} {
		if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("connect to %s while paused: accepted, want refused", addr)
		}
	}
	echo("while paused")

	listen <- false // already paused: ignored
	listen <- true
	expectLine("ready")
	echo("after the resume")
	for _, addr := range []string{httpAddr, echoAddr} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Errorf("connect to %s after the resume: %v", addr, err)
			continue
		}
		c.Close()
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + httpAddr + "/")
	if err != nil {
		t.Fatalf("HTTP after the resume: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP after the resume: %s", resp.Status)
	}
}

// freePort returns a loopback address whose port was free a moment ago:
// run binds by address, and rebinds the same one after a pause.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
