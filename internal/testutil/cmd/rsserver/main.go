// Command rsserver is the real server of xlb's demo and end-to-end tests. It
// answers every HTTP request with its name and the client address it saw,
// one line, so a test can tell which backend served a request through the
// VIP and check that the backend saw the client's own address (DSR). With
// -echo it also echoes raw TCP back, for long-lived connection tests.
//
//	rsserver -name rs1 -http :80 -echo :7
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "", "name to answer with (default: the host name)")
	httpAddr := flag.String("http", ":80", "HTTP listen address; empty for none")
	echoAddr := flag.String("echo", "", "TCP echo listen address; empty for none")
	flag.Parse()
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			log.Fatalf("rsserver: %v", err)
		}
		*name = h
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *name, *httpAddr, *echoAddr, os.Stdout); err != nil {
		log.Fatalf("rsserver: %v", err)
	}
}

// run listens and serves until ctx ends. It prints "ready" to out once every
// listener is bound, so a caller can wait for that line instead of polling.
func run(ctx context.Context, name, httpAddr, echoAddr string, out io.Writer) error {
	if httpAddr == "" && echoAddr == "" {
		return errors.New("nothing to serve: -http and -echo are both empty")
	}
	var httpLn, echoLn net.Listener
	var err error
	if httpAddr != "" {
		if httpLn, err = net.Listen("tcp", httpAddr); err != nil {
			return fmt.Errorf("http: %w", err)
		}
	}
	if echoAddr != "" {
		if echoLn, err = net.Listen("tcp", echoAddr); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
	}
	fmt.Fprintln(out, "ready")
	return serve(ctx, name, httpLn, echoLn)
}

// serve answers HTTP on httpLn and echoes on echoLn (either may be nil)
// until ctx ends or a listener fails.
func serve(ctx context.Context, name string, httpLn, echoLn net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if httpLn != nil {
		srv := &http.Server{Handler: handler(name), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http %s: %w", httpLn.Addr(), err)
			}
		}()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			srv.Close()
		}()
	}
	if echoLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveEcho(ctx, echoLn); err != nil {
				errc <- fmt.Errorf("echo %s: %w", echoLn.Addr(), err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	return err
}

// handler answers "NAME CLIENTADDR\n": the address is the TCP peer this
// server saw, which under DSR must be the client, not the LB.
func handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s %s\n", name, r.RemoteAddr)
	})
}

// serveEcho copies every connection's input back to it until the peer
// closes or ctx ends, which closes all connections.
func serveEcho(ctx context.Context, ln net.Listener) error {
	var mu sync.Mutex
	conns := make(map[net.Conn]struct{})
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		if ctx.Err() != nil {
			// Accepted after the shutdown sweep: close it here instead.
			c.Close()
		}
		go func() {
			io.Copy(c, c)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}
