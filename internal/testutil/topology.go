package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Hosts of the topology, as scripts/topology.sh names them.
const (
	Client = "client"
	LB1    = "lb1"
	LB2    = "lb2"
	// LB3 and Router exist in a topology built with Router set.
	LB3    = "lb3"
	Router = "rtr"
	RS1    = "rs1"
	RS2    = "rs2"
	RS3    = "rs3"
	// RS4 exists in a topology built with Tunnel (a tunnel real server
	// one router hop away from the balancers) or Arm2 (behind lb1's
	// eth1), never both: they number it alike.
	RS4 = "rs4"
)

// Hosts lists every host of the topology.
var Hosts = []string{Client, LB1, LB2, RS1, RS2, RS3}

// Addresses scripts/topology.sh assigns. They are repeated here so tests can
// assert them; TestTopology checks the two agree.
var (
	VIP4 = netip.MustParseAddr("192.0.2.10")
	VIP6 = netip.MustParseAddr("2001:db8:200::10")
	// RS4IP4 and RS4IP6 are RS4's addresses on its segment behind Router.
	RS4IP4 = netip.MustParseAddr("203.0.113.140")
	RS4IP6 = netip.MustParseAddr("2001:db8:400::140")
	// ClientIP4Routed and ClientIP6Routed are the client's addresses behind
	// Router in a topology built with Router set.
	ClientIP4Routed = netip.MustParseAddr("203.0.113.10")
	ClientIP6Routed = netip.MustParseAddr("2001:db8:300::10")
)

// GUEPort is the UDP port RS4 takes GUE on.
const GUEPort = 6080

var hostNum = map[string]byte{Client: 10, LB1: 2, LB2: 3, LB3: 4, Router: 1, RS1: 11, RS2: 12, RS3: 13, RS4: 14}

func mustHostNum(host string) byte {
	n, ok := hostNum[host]
	if !ok {
		panic(fmt.Sprintf("testutil: unknown topology host %q", host))
	}
	return n
}

// HostIP4 returns host's address on 198.51.100.0/24; RS4, which is not on
// that segment, has RS4IP4.
func HostIP4(host string) netip.Addr {
	if host == RS4 {
		return RS4IP4
	}
	return netip.AddrFrom4([4]byte{198, 51, 100, mustHostNum(host)})
}

// HostIP6 returns host's address on 2001:db8:100::/64; its last group spells
// the same digits as the IPv4 host number (rs1: 2001:db8:100::11). RS4,
// which is not on that segment, has RS4IP6.
func HostIP6(host string) netip.Addr {
	if host == RS4 {
		return RS4IP6
	}
	return netip.MustParseAddr("2001:db8:100::" + strconv.Itoa(int(mustHostNum(host))))
}

// HostMAC returns the MAC of host's eth0: 02:00:00:00:00:NN, whose last byte
// spells the host number's decimal digits (rs1, .11: 02:00:00:00:00:11).
func HostMAC(host string) net.HardwareAddr {
	mac, err := net.ParseMAC(fmt.Sprintf("02:00:00:00:00:%02d", mustHostNum(host)))
	if err != nil {
		panic(err)
	}
	return mac
}

// TopologyOptions adjust what Topology's `up` builds.
type TopologyOptions struct {
	// VIPOn names the LB (LB1 or LB2) that gets the VIPs on eth0; empty for
	// none, as when VRRP decides.
	VIPOn string
	// XDPPassObj is a BPF object whose "xdp" section is attached to the
	// bridge-side ports of lb1 and lb2, which native XDP_TX on veth needs.
	XDPPassObj string
	// Router puts a router (host Router) between the client and the
	// balancers and adds LB3; see scripts/topology.sh.
	Router bool
	// Tunnel adds RS4 on a segment of its own behind Router (which joins
	// the bridge if Router is not set), prepared as a tunnel real server
	// for IPIP and GUE on GUEPort; see scripts/topology.sh.
	Tunnel bool
	// DecapObj, with Tunnel, is an XDP object whose "xdp" section
	// decapsulates on RS4 instead of the kernel's ipip and fou, which
	// some kernels lack (realserver.sh --decap-obj).
	DecapObj string

	// Arm2 gives LB1 a second interface, eth1, to a segment of its own
	// with RS4 on it (Arm2IP4); see scripts/topology.sh.
	Arm2 bool
}

// Arm2IP4 returns host's address on the second arm's 203.0.113.128/25
// (LB1 and RS4 only).
func Arm2IP4(host string) netip.Addr {
	return netip.AddrFrom4([4]byte{203, 0, 113, 128 + mustHostNum(host)})
}

// Arm2IP6 returns host's address on the second arm's 2001:db8:400::/64,
// numbered as HostIP6 numbers (LB1 and RS4 only).
func Arm2IP6(host string) netip.Addr {
	return netip.MustParseAddr("2001:db8:400::" + strconv.Itoa(int(mustHostNum(host))))
}

// Topology is one isolated copy of the scripts/topology.sh network, its
// namespaces named with a prefix unique to the test.
type Topology struct {
	// Prefix is prepended to every namespace name.
	Prefix string
	script string
}

var topoSeq atomic.Uint32

// topologyTimeout bounds one run of topology.sh; `up` takes about a second.
const topologyTimeout = 2 * time.Minute

// NewTopology builds a topology for tb and removes it in tb's cleanup, also
// when the test fails or `up` itself fails half-way.
func NewTopology(tb testing.TB, opts TopologyOptions) *Topology {
	tb.Helper()
	RequireRoot(tb, netnsReason)
	root := MustRepoRoot(tb)
	topo := &Topology{
		Prefix: uniquePrefix(tb.Name()),
		script: filepath.Join(root, "scripts", "topology.sh"),
	}
	tb.Cleanup(func() {
		if err := topo.Down(); err != nil {
			tb.Error(err)
		}
	})
	if err := topo.Up(opts); err != nil {
		tb.Fatal(err)
	}
	return topo
}

// uniquePrefix fits "x" + 6 hex digits + "-" in front of the longest host
// name ("client"), 14 characters: within IFNAMSIZ, should anything be named
// after a namespace. The pid and a sequence number keep concurrent test
// processes and several topologies of one test apart.
func uniquePrefix(name string) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d/%d", name, os.Getpid(), topoSeq.Add(1))
	return fmt.Sprintf("x%06x-", h.Sum32()&0xffffff)
}

// Up runs topology.sh up; on a complete topology it changes nothing.
func (topo *Topology) Up(opts TopologyOptions) error {
	args := []string{"up"}
	if opts.VIPOn != "" {
		args = append(args, "--vip-on", opts.VIPOn)
	}
	if opts.Router {
		args = append(args, "--router")
	}
	if opts.Tunnel {
		args = append(args, "--tunnel")
	}
	if opts.Arm2 {
		args = append(args, "--arm2")
	}
	var env []string
	if opts.XDPPassObj != "" {
		env = append(env, "XDP_PASS_OBJ="+opts.XDPPassObj)
	}
	if opts.DecapObj != "" {
		env = append(env, "DECAP_OBJ="+opts.DecapObj)
	}
	return topo.run(env, args...)
}

// Down removes the topology now rather than at cleanup, which then finds
// nothing left to do.
func (topo *Topology) Down() error { return topo.run(nil, "down") }

func (topo *Topology) run(env []string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", append([]string{topo.script}, args...)...)
	c.Env = append(append(os.Environ(), "XLB_PREFIX="+topo.Prefix), env...)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("topology %s %s: %w\n%s", topo.Prefix, args[0], err, out)
	}
	return nil
}

// NS returns the network namespace name of host.
func (topo *Topology) NS(host string) string { return topo.Prefix + host }

// NSPath returns the bind-mounted namespace file of host.
func (topo *Topology) NSPath(host string) string { return "/run/netns/" + topo.NS(host) }

// Command returns a command that runs in host through `ip netns exec`, which
// also gives it a fresh /sys; /sys/fs/bpf there is empty (see NetCommand).
func (topo *Topology) Command(host, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", topo.NS(host), name}, args...)...)
}

// NetCommand returns a command that enters only host's network namespace
// (nsenter --net), keeping the caller's mount namespace and so the shared
// /sys/fs/bpf pins.
func (topo *Topology) NetCommand(host, name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + topo.NSPath(host), "--", name}, args...)...)
}

// execTimeout bounds Exec: commands run there are expected to finish.
const execTimeout = time.Minute

// Exec runs cmd in host (via `ip netns exec`) and returns its combined
// output; it fails the test on error or after a minute.
func (topo *Topology) Exec(tb testing.TB, host string, cmd ...string) string {
	tb.Helper()
	return runBounded(tb, topo.Command(host, cmd[0], cmd[1:]...))
}

// ExecNet is Exec through nsenter --net (see NetCommand).
func (topo *Topology) ExecNet(tb testing.TB, host string, cmd ...string) string {
	tb.Helper()
	return runBounded(tb, topo.NetCommand(host, cmd[0], cmd[1:]...))
}

func runBounded(tb testing.TB, c *exec.Cmd) string {
	tb.Helper()
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		tb.Fatalf("%s: %v", c, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("%s: %v\n%s", c, err, out.Bytes())
		}
	case <-time.After(execTimeout):
		c.Process.Kill()
		<-done
		tb.Fatalf("%s: still running after %v, killed\n%s", c, execTimeout, out.Bytes())
	}
	return out.String()
}

// Proc is a command running in the background of a test.
type Proc struct {
	Cmd  *exec.Cmd
	out  Buffer
	done chan struct{}
	err  error
}

// Start starts cmd in host (via `ip netns exec`) and stops it at cleanup,
// logging its output if the test failed.
func (topo *Topology) Start(tb testing.TB, host string, cmd ...string) *Proc {
	tb.Helper()
	return startProc(tb, topo.Command(host, cmd[0], cmd[1:]...))
}

// StartNet is Start through nsenter --net (see NetCommand).
func (topo *Topology) StartNet(tb testing.TB, host string, cmd ...string) *Proc {
	tb.Helper()
	return startProc(tb, topo.NetCommand(host, cmd[0], cmd[1:]...))
}

func startProc(tb testing.TB, c *exec.Cmd) *Proc {
	tb.Helper()
	p := &Proc{Cmd: c, done: make(chan struct{})}
	c.Stdout, c.Stderr = &p.out, &p.out
	// Its own process group, so Stop reaches what ip/nsenter exec'd and
	// anything that spawned.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		tb.Fatalf("%s: %v", c, err)
	}
	go func() { p.err = c.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("output of %s:\n%s", c, p.Output())
		}
	})
	return p
}

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Stop sends SIGTERM to the process group, SIGKILL if it is still there
// after a grace period, and returns the wait error. Stopping twice is fine.
func (p *Proc) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output returns what the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Buffer is a bytes.Buffer safe for concurrent use: a process's output or
// a logger's, read by the test while it is written.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Do runs fn on an OS thread switched into host's network namespace.
// Sockets fn opens stay in that namespace after Do returns; goroutines fn
// starts do not inherit it (they run on other threads).
func (topo *Topology) Do(host string, fn func() error) error {
	return DoInNetNS(topo.NSPath(host), fn)
}

// DoInNetNS runs fn on an OS thread switched into the network namespace
// bind-mounted at path.
func DoInNetNS(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()

	// A fresh goroutine: if the thread cannot be switched back, the goroutine
	// exits still locked and the runtime discards the thread rather than
	// letting other goroutines run in the wrong namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// TunnelDecapObj returns what TopologyOptions.DecapObj should be on this
// kernel: "" where the kernel's own ipip, ip6tnl and fou take the tunnel
// header off (what a real TUN server uses), else the XDP decapsulator
// internal/testutil/decap builds, so that tunnel mode is tested on kernels
// built without those modules too.
func TunnelDecapObj(tb testing.TB) string {
	tb.Helper()
	RequireRoot(tb, netnsReason)
	kernelTunnels.once.Do(func() { kernelTunnels.err = probeKernelTunnels() })
	if kernelTunnels.err == nil {
		return ""
	}
	obj := filepath.Join(MustRepoRoot(tb), "internal", "testutil", "decap", "decap_bpfel.o")
	if _, err := os.Stat(obj); err != nil {
		tb.Fatalf("this kernel cannot decapsulate (%v) and the XDP decapsulator is missing: %v", kernelTunnels.err, err)
	}
	tb.Logf("decapsulating on the tunnel server with XDP (%s): %v", obj, kernelTunnels.err)
	return obj
}

var kernelTunnels struct {
	once sync.Once
	err  error
}

// probeKernelTunnels creates what realserver.sh --tunnel gue:PORT needs in
// a throwaway namespace.
func probeKernelTunnels() error {
	ns := fmt.Sprintf("xlb-tunprobe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %w: %s", ns, err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	for _, args := range [][]string{
		{"link", "add", "t4", "type", "ipip", "external"},
		{"link", "add", "t6", "type", "ip6tnl", "mode", "ip6ip6", "external"},
		{"fou", "add", "port", strconv.Itoa(GUEPort), "gue"},
		{"fou", "add", "port", strconv.Itoa(GUEPort), "gue", "-6"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %w: %s", args, err, bytes.TrimSpace(out))
		}
	}
	return nil
}
