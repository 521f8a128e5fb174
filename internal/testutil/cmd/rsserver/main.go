// Command rsserver is the real server of xlb's demo and end-to-end tests. It
// answers every HTTP request with its name and the client address it saw,
// one line, so a test can tell which backend served a request through the
// VIP and check that the backend saw the client's own address (DSR). With
// -echo it also echoes raw TCP back, for long-lived connection tests.
// GET /bytes/N answers N bytes instead (byte i is i mod 251), a download
// for path-MTU tests.
//
//	rsserver -name rs1 -http :80 -echo :7
//
// SIGUSR1 closes the listeners and SIGUSR2 opens them again; established
// connections carry on either way. That is a server whose service is down
// for new connections (health checks fail, connection refused) while the
// flows it already has stay up, which is what a drain must preserve. The
// server prints "paused" once the listeners are closed and "ready" once
// they are bound, at start and after each SIGUSR2.
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
	"strconv"
	"sync"
	"sync/atomic"
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
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	listen := make(chan bool)
	go func() {
		for s := range sigs {
			select {
			case listen <- s == syscall.SIGUSR2:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := run(ctx, *name, *httpAddr, *echoAddr, os.Stdout, listen); err != nil {
		log.Fatalf("rsserver: %v", err)
	}
}

// run listens and serves until ctx ends. It prints "ready" to out once every
// listener is bound, so a caller can wait for that line instead of polling.
// A false on listen closes the listeners (then "paused" is printed), a true
// binds them again; a value that asks for the current state is ignored.
func run(ctx context.Context, name, httpAddr, echoAddr string, out io.Writer, listen <-chan bool) error {
	if httpAddr == "" && echoAddr == "" {
		return errors.New("nothing to serve: -http and -echo are both empty")
	}
	s := newServer(name)
	defer s.shutdown()
	for {
		httpLn, echoLn, err := bind(httpAddr, echoAddr)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "ready")
		paused, err := s.accept(ctx, httpLn, echoLn, listen)
		if err != nil || !paused {
			return err
		}
		fmt.Fprintln(out, "paused")
		if !waitListen(ctx, listen) {
			return nil
		}
	}
}

// waitListen waits for a request to listen again; false if ctx ended first.
func waitListen(ctx context.Context, listen <-chan bool) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case up := <-listen:
			if up {
				return true
			}
		}
	}
}

func bind(httpAddr, echoAddr string) (httpLn, echoLn net.Listener, err error) {
	if httpAddr != "" {
		if httpLn, err = net.Listen("tcp", httpAddr); err != nil {
			return nil, nil, fmt.Errorf("http: %w", err)
		}
	}
	if echoAddr != "" {
		if echoLn, err = net.Listen("tcp", echoAddr); err != nil {
			if httpLn != nil {
				httpLn.Close()
			}
			return nil, nil, fmt.Errorf("echo: %w", err)
		}
	}
	return httpLn, echoLn, nil
}

// server holds what outlives one set of listeners: the HTTP server and the
// established echo connections.
type server struct {
	http *http.Server

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // echo connections
}

func newServer(name string) *server {
	return &server{
		http:  &http.Server{Handler: handler(name), ReadHeaderTimeout: 10 * time.Second},
		conns: map[net.Conn]struct{}{},
	}
}

// accept takes new connections on httpLn and echoLn until ctx ends, a
// listener fails, or listen says false (paused). Either way it closes both
// listeners before it returns, and leaves established connections alone.
func (s *server) accept(ctx context.Context, httpLn, echoLn net.Listener, listen <-chan bool) (paused bool, err error) {
	// Closing a listener is how accept stops the loops below; their
	// errors from then on are not failures.
	var closing atomic.Bool
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	if httpLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.http.Serve(httpLn); !closing.Load() {
				errc <- fmt.Errorf("http %s: %w", httpLn.Addr(), err)
			}
		}()
	}
	if echoLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.acceptEcho(echoLn); !closing.Load() {
				errc <- fmt.Errorf("echo %s: %w", echoLn.Addr(), err)
			}
		}()
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			break loop
		case up := <-listen:
			if !up {
				paused = true
				break loop
			}
		}
	}
	closing.Store(true)
	for _, ln := range []net.Listener{httpLn, echoLn} {
		if ln != nil {
			ln.Close()
		}
	}
	wg.Wait()
	return paused, err
}

// acceptEcho copies every connection's input back to it until the peer
// closes or the server shuts down.
func (s *server) acceptEcho(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			io.Copy(c, c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// shutdown closes every connection and waits for their handlers.
func (s *server) shutdown() {
	s.http.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// handler answers "NAME CLIENTADDR\n": the address is the TCP peer this
// server saw, which under DSR must be the client, not the LB. /bytes/N
// answers N bytes of download instead.
func handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 || n > maxDownload {
			http.Error(w, fmt.Sprintf("%q is not a size from 0 to %d", r.PathValue("n"), maxDownload), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("X-Server", name)
		io.CopyN(w, &pattern{}, n)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s %s\n", name, r.RemoteAddr)
	})
	return mux
}

// maxDownload bounds /bytes/N: a test's download, not a disk filler.
const maxDownload = 1 << 30

// pattern reads as the download's bytes: byte i is i mod 251, a prime,
// so a lost or repeated segment shows up as a wrong byte.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}
