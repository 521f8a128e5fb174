package healthcheck

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/srcaddr"
)

// Prober runs one probe of one check against one backend. It returns nil
// when the probe passes and must return promptly once ctx is done: the
// Manager cancels ctx when connect_timeout (misc_timeout for MISC_CHECK)
// has passed. An HTTP or SSL check handed to Probe may list several URLs;
// all must pass. The Manager hands it one URL at a time, as keepalived
// fetches them.
type Prober interface {
	Probe(ctx context.Context, c service.Check, backend netip.AddrPort) (Result, error)
}

// Result is what a passing probe can say besides "up".
type Result struct {
	// Weight is the weight a misc_dynamic script asked for with its exit
	// status (status - 2); nil leaves the weight as it is.
	Weight *int
}

// DefaultProber probes with real connections and processes. Probes leave
// from the balancer's own address (the kernel's choice, or bindto), never
// from a VIP, and connect to connect_ip:connect_port, which default to the
// backend's address and port.
type DefaultProber struct {
	// vips are the addresses probes never leave from.
	vips srcaddr.Picker
	// termGrace is how long a MISC_CHECK script that has timed out gets
	// between SIGTERM and SIGKILL; zero means keepalived's 2 seconds,
	// which only tests shorten.
	termGrace time.Duration
}

// Probe runs the probe c describes.
func (p *DefaultProber) Probe(ctx context.Context, c service.Check, backend netip.AddrPort) (Result, error) {
	switch c.Kind {
	case service.CheckTCP:
		d, err := p.dialer(c, backend)
		if err != nil {
			return Result{}, err
		}
		return Result{}, probeTCP(ctx, c, backend, d)
	case service.CheckHTTP, service.CheckSSL:
		d, err := p.dialer(c, backend)
		if err != nil {
			return Result{}, err
		}
		return Result{}, probeHTTP(ctx, c, backend, d)
	case service.CheckMisc:
		return p.probeMisc(ctx, c)
	}
	return Result{}, fmt.Errorf("unknown check type %s", c.Kind)
}

// dest returns the address a check connects to.
func dest(c service.Check, backend netip.AddrPort) netip.AddrPort {
	ip, port := backend.Addr(), backend.Port()
	if c.ConnectIP.IsValid() {
		ip = c.ConnectIP
	}
	if c.ConnectPort != 0 {
		port = c.ConnectPort
	}
	return netip.AddrPortFrom(ip, port)
}

// dialer returns the dialer of a probe of c: from bindto, else from the
// kernel's choice of source unless that is a VIP (see srcaddr.Picker.Override).
func (p *DefaultProber) dialer(c service.Check, backend netip.AddrPort) (*net.Dialer, error) {
	src := c.BindTo
	if !src.IsValid() && c.BindIf == "" {
		var err error
		if src, err = p.vips.Override(dest(c, backend).Addr()); err != nil {
			return nil, err
		}
	}
	return dialer(c, src), nil
}

func dialer(c service.Check, src netip.Addr) *net.Dialer {
	d := &net.Dialer{}
	if src.IsValid() || c.BindPort != 0 {
		la := &net.TCPAddr{Port: int(c.BindPort)}
		if src.IsValid() {
			la.IP = src.AsSlice()
		}
		d.LocalAddr = la
	}
	if c.BindIf != "" {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, c.BindIf)
			})
			if err == nil && serr != nil {
				err = fmt.Errorf("bind_if %s: %w", c.BindIf, serr)
			}
			return err
		}
	}
	return d
}

// probeTCP is TCP_CHECK: the backend passes if it completes a handshake.
func probeTCP(ctx context.Context, c service.Check, backend netip.AddrPort, d *net.Dialer) error {
	conn, err := d.DialContext(ctx, "tcp", dest(c, backend).String())
	if err != nil {
		return err
	}
	return conn.Close()
}

// urlScheme is the scheme of an HTTP_GET (http) or SSL_GET (https) check.
func urlScheme(k service.CheckKind) string {
	if k == service.CheckSSL {
		return "https"
	}
	return "http"
}

// probeHTTP is HTTP_GET and SSL_GET: every URL must answer with an
// accepted status and, if a digest is set, a body whose MD5 matches it.
func probeHTTP(ctx context.Context, c service.Check, backend netip.AddrPort, d *net.Dialer) error {
	dst := dest(c, backend).String()
	scheme := urlScheme(c.Kind)
	for _, u := range c.URLs {
		if err := fetch(ctx, c, u, scheme, dst, d); err != nil {
			return fmt.Errorf("GET %s://%s%s: %w", scheme, dst, u.Path, err)
		}
	}
	return nil
}

func fetch(ctx context.Context, c service.Check, u service.URL, scheme, dst string, d *net.Dialer) error {
	vhost := u.VirtualHost
	if vhost == "" {
		vhost = c.VirtualHost
	}
	sni := ""
	if c.EnableSNI {
		sni = hostOnly(vhost)
	}
	tr := &http.Transport{
		// Never a proxy from the environment: the probe is about this
		// backend.
		Proxy:             nil,
		DialContext:       d.DialContext,
		DisableKeepAlives: true,
		// SSL_GET does not verify the certificate (keepalived does not
		// unless given a CA), and sends SNI only when enable_sni is set.
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: sni})
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		},
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// A redirect is an answer like any other; its status decides.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ref, err := url.ParseRequestURI(u.Path)
	if err != nil {
		return fmt.Errorf("bad path: %w", err)
	}
	ref.Scheme, ref.Host = scheme, dst
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.String(), nil)
	if err != nil {
		return err
	}
	if vhost != "" {
		req.Host = vhost
	}
	// keepalived's user agent, so that backends that filter health checks
	// out of their logs keep doing so.
	req.Header.Set("User-Agent", "KeepAliveClient")
	req.Close = true
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !statusAccepted(resp.StatusCode, u.StatusCodes) {
		return fmt.Errorf("status %d not in %s", resp.StatusCode, statusList(u.StatusCodes))
	}
	if u.Digest == "" {
		return nil
	}
	h := md5.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(u.Digest) {
		return fmt.Errorf("body digest %s, want %s", got, strings.ToLower(u.Digest))
	}
	return nil
}

func statusAccepted(code int, ranges []service.StatusRange) bool {
	if len(ranges) == 0 {
		return code >= service.DefaultHTTPStatusMin && code <= service.DefaultHTTPStatusMax
	}
	for _, r := range ranges {
		if code >= r.Min && code <= r.Max {
			return true
		}
	}
	return false
}

func statusList(ranges []service.StatusRange) string {
	if len(ranges) == 0 {
		return strconv.Itoa(service.DefaultHTTPStatusMin) + "-" + strconv.Itoa(service.DefaultHTTPStatusMax)
	}
	s := make([]string, len(ranges))
	for i, r := range ranges {
		s[i] = r.String()
	}
	return strings.Join(s, " ")
}

// hostOnly strips a port from a virtualhost, for SNI.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
