package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

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
	if err := run(context.Background(), "rs9", "", "", io.Discard); err == nil {
		t.Error("run with no listeners: no error")
	}
}
