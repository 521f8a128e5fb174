package healthcheck

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
)

// shortTimeout bounds the probes of these tests that are expected to time
// out; the tests assert that they fail, never how long they took.
const shortTimeout = 300 * time.Millisecond

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// acceptAll accepts connections on ln and reports each peer address.
func acceptAll(ln net.Listener) <-chan netip.AddrPort {
	peers := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
				select {
				case peers <- ap:
				default:
				}
			}
			c.Close()
		}
	}()
	return peers
}

// closedPort returns a local address nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrPort(t, ln.Addr())
	ln.Close()
	return ap
}

func probe(t *testing.T, c service.Check, be netip.AddrPort) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	return (&DefaultProber{}).Probe(ctx, c, be)
}

func TestTCPProbe(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	acceptAll(ln)
	open := addrPort(t, ln.Addr())
	closed := closedPort(t)

	tests := []struct {
		name    string
		check   service.Check
		be      netip.AddrPort
		wantErr error
	}{
		{name: "open port", check: service.Check{Kind: service.CheckTCP}, be: open},
		{name: "refused port", check: service.Check{Kind: service.CheckTCP}, be: closed, wantErr: syscall.ECONNREFUSED},
		{name: "connect_ip and connect_port override the backend's", be: closed,
			check: service.Check{Kind: service.CheckTCP, ConnectIP: open.Addr(), ConnectPort: open.Port()}},
		{name: "connect_port alone", be: netip.AddrPortFrom(open.Addr(), closed.Port()),
			check: service.Check{Kind: service.CheckTCP, ConnectPort: open.Port()}},
		{name: "connect_port to a closed port fails an open backend", be: open,
			check: service.Check{Kind: service.CheckTCP, ConnectPort: closed.Port()}, wantErr: syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := probe(t, tt.check, tt.be)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("probe failed: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("probe error %v, want %v", err, tt.wantErr)
			}
		})
	}
	t.Run("bind_if pins the probe to an interface", func(t *testing.T) {
		testutil.RequireRoot(t, "SO_BINDTODEVICE")
		if _, err := probe(t, service.Check{Kind: service.CheckTCP, BindIf: "lo"}, open); err != nil {
			t.Errorf("probe bound to lo failed: %v", err)
		}
		// ENODEV can only come from the socket option: the probe used it.
		_, err := probe(t, service.Check{Kind: service.CheckTCP, BindIf: "xlbnone0"}, open)
		if !errors.Is(err, syscall.ENODEV) || !strings.Contains(err.Error(), "bind_if xlbnone0") {
			t.Errorf("probe bound to a missing interface: %v, want ENODEV naming bind_if", err)
		}
	})
	t.Run("bindto and bind_port set the source", func(t *testing.T) {
		ln := listen(t, "127.0.0.1:0")
		peers := acceptAll(ln)
		open := addrPort(t, ln.Addr())
		src := netip.MustParseAddr("127.0.0.2")
		port := closedPort(t).Port()
		if _, err := probe(t, service.Check{Kind: service.CheckTCP, BindTo: src, BindPort: port}, open); err != nil {
			t.Fatalf("probe failed: %v", err)
		}
		select {
		case got := <-peers:
			if want := netip.AddrPortFrom(src, port); got != want {
				t.Errorf("server saw the probe from %s, want %s", got, want)
			}
		case <-time.After(guard):
			t.Fatal("server saw no connection")
		}
	})
}

// fullListener returns an address whose listener never accepts and whose
// accept queue is full, so that a new connection attempt gets no answer.
func fullListener(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	// Backlog 0: the kernel queues one connection, then drops SYNs.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.AddrPortFrom(netip.AddrFrom4(sa.(*syscall.SockaddrInet4).Addr), uint16(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue; connections beyond it hang, which is fine.
	for range 3 {
		c, err := net.DialTimeout("tcp", ap.String(), shortTimeout)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return ap
}

func TestTCPProbeTimeout(t *testing.T) {
	be := fullListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), shortTimeout)
	defer cancel()
	_, err := (&DefaultProber{}).Probe(ctx, service.Check{Kind: service.CheckTCP}, be)
	if err == nil {
		t.Fatal("probe of a listener that never accepts passed")
	}
	if !isTimeout(err) {
		t.Fatalf("probe error %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// webServer serves the paths the HTTP tests fetch and records the Host
// header and TLS server name of every request.
type webServer struct {
	mu    sync.Mutex
	hosts []string
	snis  []string
}

func (w *webServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, "hello") })
	mux.HandleFunc("/big", func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, strings.Repeat("x", 1<<20)) })
	mux.HandleFunc("/unavailable", func(rw http.ResponseWriter, r *http.Request) { http.Error(rw, "down", http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(rw http.ResponseWriter, r *http.Request) { http.Redirect(rw, r, "/ok", http.StatusFound) })
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.hosts = append(w.hosts, r.Host)
		w.mu.Unlock()
		mux.ServeHTTP(rw, r)
	})
}

func (w *webServer) lastHost() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.hosts) == 0 {
		return ""
	}
	return w.hosts[len(w.hosts)-1]
}

func (w *webServer) lastSNI() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.snis) == 0 {
		return "", false
	}
	return w.snis[len(w.snis)-1], true
}

func TestHTTPProbe(t *testing.T) {
	web := &webServer{}
	srv := httptest.NewServer(web.handler())
	t.Cleanup(srv.Close)
	be := addrPort(t, srv.Listener.Addr())
	get := func(urls ...service.URL) service.Check { return service.Check{Kind: service.CheckHTTP, URLs: urls} }

	tests := []struct {
		name     string
		check    service.Check
		wantErr  string // substring; empty: must pass
		wantHost string // Host header the server must have seen
	}{
		{name: "200 passes", check: get(service.URL{Path: "/ok"}), wantHost: be.String()},
		{name: "wrong status fails", check: get(service.URL{Path: "/unavailable"}), wantErr: "status 503 not in 200-299"},
		{name: "status_code range accepts it", check: get(service.URL{Path: "/unavailable", StatusCodes: []service.StatusRange{{Min: 200, Max: 200}, {Min: 500, Max: 599}}})},
		{name: "status_code list rejects 200", check: get(service.URL{Path: "/ok", StatusCodes: []service.StatusRange{{Min: 201, Max: 299}}}), wantErr: "status 200 not in 201-299"},
		{name: "a redirect is not followed", check: get(service.URL{Path: "/moved"}), wantErr: "status 302"},
		{name: "a redirect passes when its status is accepted", check: get(service.URL{Path: "/moved", StatusCodes: []service.StatusRange{{Min: 300, Max: 399}}})},
		{name: "right digest", check: get(service.URL{Path: "/ok", Digest: md5hex("hello")})},
		{name: "right digest in upper case", check: get(service.URL{Path: "/ok", Digest: strings.ToUpper(md5hex("hello"))})},
		{name: "right digest of a large body", check: get(service.URL{Path: "/big", Digest: md5hex(strings.Repeat("x", 1<<20))})},
		{name: "wrong digest", check: get(service.URL{Path: "/ok", Digest: md5hex("goodbye")}), wantErr: "body digest " + md5hex("hello") + ", want " + md5hex("goodbye")},
		{name: "digest is checked after status", check: get(service.URL{Path: "/unavailable", Digest: md5hex("down\n")}), wantErr: "status 503"},
		{name: "every URL must pass", check: get(service.URL{Path: "/ok"}, service.URL{Path: "/unavailable"}), wantErr: "/unavailable: status 503"},
		{name: "query strings are kept", check: get(service.URL{Path: "/ok?probe=1"})},
		{
			name:     "virtualhost sets the Host header",
			check:    service.Check{Kind: service.CheckHTTP, VirtualHost: "www.example.com", URLs: []service.URL{{Path: "/ok"}}},
			wantHost: "www.example.com",
		},
		{
			name:     "a URL's virtualhost overrides the check's",
			check:    service.Check{Kind: service.CheckHTTP, VirtualHost: "www.example.com", URLs: []service.URL{{Path: "/ok", VirtualHost: "api.example.com"}}},
			wantHost: "api.example.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := probe(t, tt.check, be)
			wantProbeErr(t, err, tt.wantErr)
			if tt.wantHost != "" {
				if got := web.lastHost(); got != tt.wantHost {
					t.Errorf("server saw Host %q, want %q", got, tt.wantHost)
				}
			}
		})
	}
}

// wantProbeErr fails the test unless err is nil when want is empty, or
// an error containing want.
func wantProbeErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("probe failed: %v", err)
	case want != "" && err == nil:
		t.Fatalf("probe passed, want an error containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("probe error %q, want one containing %q", err, want)
	}
}

func TestHTTPProbeTimeout(t *testing.T) {
	// A server that accepts and never answers.
	ln := listen(t, "127.0.0.1:0")
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	for _, kind := range []service.CheckKind{service.CheckHTTP, service.CheckSSL} {
		t.Run(kind.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), shortTimeout)
			defer cancel()
			_, err := (&DefaultProber{}).Probe(ctx, service.Check{Kind: kind, URLs: []service.URL{{Path: "/ok"}}}, addrPort(t, ln.Addr()))
			if err == nil {
				t.Fatal("probe of a server that never answers passed")
			}
			if !isTimeout(err) {
				t.Fatalf("probe error %v, want a timeout", err)
			}
		})
	}
}

func TestSSLProbe(t *testing.T) {
	web := &webServer{}
	srv := httptest.NewUnstartedServer(web.handler())
	srv.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		web.mu.Lock()
		web.snis = append(web.snis, hello.ServerName)
		web.mu.Unlock()
		return nil, nil
	}}
	// The plain-HTTP case makes the server log a handshake error.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	be := addrPort(t, srv.Listener.Addr())

	tests := []struct {
		name    string
		check   service.Check
		wantErr string
		wantSNI string
	}{
		{
			name:  "self-signed certificate is accepted, no SNI by default",
			check: service.Check{Kind: service.CheckSSL, VirtualHost: "www.example.com", URLs: []service.URL{{Path: "/ok", Digest: md5hex("hello")}}},
		},
		{
			name:    "enable_sni sends the virtualhost",
			check:   service.Check{Kind: service.CheckSSL, EnableSNI: true, VirtualHost: "www.example.com", URLs: []service.URL{{Path: "/ok"}}},
			wantSNI: "www.example.com",
		},
		{
			name:    "enable_sni sends a URL's virtualhost",
			check:   service.Check{Kind: service.CheckSSL, EnableSNI: true, VirtualHost: "www.example.com", URLs: []service.URL{{Path: "/ok", VirtualHost: "api.example.com:8443"}}},
			wantSNI: "api.example.com",
		},
		{
			name:    "wrong status over TLS",
			check:   service.Check{Kind: service.CheckSSL, URLs: []service.URL{{Path: "/unavailable"}}},
			wantErr: "status 503",
		},
		{
			name:    "plain HTTP to a TLS server fails",
			check:   service.Check{Kind: service.CheckHTTP, URLs: []service.URL{{Path: "/ok"}}},
			wantErr: "status 400",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := probe(t, tt.check, be)
			wantProbeErr(t, err, tt.wantErr)
			if tt.check.Kind != service.CheckSSL {
				return
			}
			sni, ok := web.lastSNI()
			if !ok {
				t.Fatal("server saw no TLS handshake")
			}
			if sni != tt.wantSNI {
				t.Errorf("server saw SNI %q, want %q", sni, tt.wantSNI)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	be := netip.MustParseAddrPort("198.51.100.7:80")
	tests := []struct {
		check service.Check
		want  string
	}{
		{service.Check{Kind: service.CheckTCP}, "tcp check of 198.51.100.7:80"},
		{service.Check{Kind: service.CheckTCP, ConnectPort: 8080}, "tcp check of 198.51.100.7:8080"},
		{service.Check{Kind: service.CheckHTTP, URLs: []service.URL{{Path: "/health"}}}, "http check GET http://198.51.100.7:80/health"},
		{service.Check{Kind: service.CheckSSL, ConnectPort: 443, URLs: []service.URL{{Path: "/"}}}, "ssl check GET https://198.51.100.7:443/"},
		{service.Check{Kind: service.CheckHTTP, URLs: []service.URL{{Path: "/a"}, {Path: "/b"}}}, "http check of http://198.51.100.7:80"},
		{service.Check{Kind: service.CheckMisc, MiscPath: "/usr/local/bin/check rs1"}, `misc check "/usr/local/bin/check rs1"`},
	}
	for _, tt := range tests {
		if got := describe(tt.check, be); got != tt.want {
			t.Errorf("describe(%+v) = %q, want %q", tt.check, got, tt.want)
		}
	}
}
