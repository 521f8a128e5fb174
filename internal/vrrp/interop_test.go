package vrrp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlb-project/xlb/internal/announce"
	"github.com/xlb-project/xlb/internal/testutil"
	"github.com/xlb-project/xlb/internal/vrrp"
)

const (
	peerEnv     = "XLB_VRRP_INTEROP_PEER"
	interopVRID = 60
	interopAdv  = 200 * time.Millisecond
)

// interopVIPs are the virtual addresses of the interop runs, one per
// address family.
var interopVIPs = map[string]netip.Prefix{
	"ipv4": netip.MustParsePrefix("192.0.2.10/32"),
	"ipv6": netip.MustParsePrefix("2001:db8:200::10/128"),
}

// TestInteropPeer is the xlb side of TestKeepalivedInterop: the test
// binary re-runs itself inside the namespace with the instance in the
// environment, so sockets, netlink and the announcer all live there.
func TestInteropPeer(t *testing.T) {
	spec := os.Getenv(peerEnv)
	if spec == "" {
		t.Skip("runs only as TestKeepalivedInterop's peer process")
	}
	var ps peerSpec
	if err := json.Unmarshal([]byte(spec), &ps); err != nil {
		t.Fatal(err)
	}
	ipv6 := len(ps.VRRP.Addrs) > 0 && ps.VRRP.Addrs[0].Is6()
	conn, err := vrrp.Listen(vrrp.ConnConfig{Interface: ps.Announce.Interface, IPv6: ipv6})
	if err != nil {
		t.Fatal(err)
	}
	an := announce.New(ps.Announce, announce.Options{})
	inst, err := vrrp.New(ps.VRRP, vrrp.Options{Conn: conn, OnChange: func(e vrrp.Event) {
		switch {
		case e.To.HoldsAddresses() && !e.From.HoldsAddresses():
			err = an.Acquire()
		case !e.To.HoldsAddresses() && e.From.HoldsAddresses():
			err = an.Release()
		}
		if err != nil {
			fmt.Printf("ERROR %v\n", err)
		}
		fmt.Printf("STATE %s\n", e.To)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := inst.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// peerSpec is the instance TestInteropPeer runs, and the addresses it
// holds while master.
type peerSpec struct {
	VRRP     vrrp.Config
	Announce announce.Config
}

// side is one VRRP speaker of the interop test.
type side struct {
	name string
	ns   string
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *side) stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("%s did not stop within 10 s of SIGTERM", s.name)
	}
	s.cmd = nil
}

func (s *side) start(t *testing.T, cmd *exec.Cmd, logPath string) {
	t.Helper()
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() {
		cmd.Wait()
		out.Close()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
}

// holder polls both namespaces for the VIP and tracks the longest time
// both held it.
type holder struct {
	mu        sync.Mutex
	holds     map[string]bool
	bothSince time.Time
	longest   time.Duration
}

func (h *holder) poll(t *testing.T, ctx context.Context, vip netip.Prefix, nss ...string) {
	handles := map[string]*netlink.Handle{}
	for _, ns := range nss {
		nh, err := netns.GetFromName(ns)
		if err != nil {
			t.Error(err)
			return
		}
		defer nh.Close()
		hd, err := netlink.NewHandleAt(nh)
		if err != nil {
			t.Error(err)
			return
		}
		defer hd.Close()
		handles[ns] = hd
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		holds := map[string]bool{}
		for ns, hd := range handles {
			link, err := hd.LinkByName("eth0")
			if err != nil {
				continue
			}
			addrs, _ := hd.AddrList(link, netlink.FAMILY_ALL)
			for _, a := range addrs {
				if a.IPNet.String() == vip.String() {
					holds[ns] = true
				}
			}
		}
		now := time.Now()
		h.mu.Lock()
		h.holds = holds
		both := len(holds) == len(handles)
		switch {
		case both && h.bothSince.IsZero():
			h.bothSince = now
		case !both && !h.bothSince.IsZero():
			h.longest = max(h.longest, now.Sub(h.bothSince))
			h.bothSince = time.Time{}
		}
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitOnly waits until exactly ns holds the VIP.
func (h *holder) waitOnly(t *testing.T, ns string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		ok := len(h.holds) == 1 && h.holds[ns]
		h.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t.Fatalf("after %v: VIP held by %v, want %s only", within, h.holds, ns)
}

// TestKeepalivedInterop runs xlb's VRRP against Debian's keepalived on one
// VRID (v3, 200 ms adverts), over IPv4 and over IPv6: each is master in
// turn, each preempts the other, each stops gracefully with priority 0,
// and the VIP is never held by both for longer than one advertisement
// interval.
func TestKeepalivedInterop(t *testing.T) {
	if os.Getenv(peerEnv) != "" {
		t.Skip("peer process")
	}
	testutil.RequireRoot(t, "creates network namespaces")
	kbin, err := exec.LookPath("keepalived")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/keepalived"); err != nil {
			t.Skip("keepalived is not installed")
		}
		kbin = "/usr/sbin/keepalived"
	}
	if testing.Short() {
		t.Skip("takes about 15 s per address family")
	}
	for _, family := range []string{"ipv4", "ipv6"} {
		t.Run(family, func(t *testing.T) { testKeepalivedInterop(t, kbin, interopVIPs[family]) })
	}
}

func testKeepalivedInterop(t *testing.T, kbin string, vip netip.Prefix) {
	dir := t.TempDir()
	nsK, nsX := fmt.Sprintf("xlbk%d", os.Getpid()), fmt.Sprintf("xlbx%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	for _, ns := range []string{nsK, nsX} {
		run("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		// IPv6 VRRP speaks from the link-local address, which must not
		// sit tentative through duplicate address detection.
		for _, kv := range []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"} {
			if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", kv).CombinedOutput(); err != nil {
				t.Fatalf("%s: sysctl %s: %v: %s", ns, kv, err, out)
			}
		}
	}
	run("link", "add", "eth0", "netns", nsK, "type", "veth", "peer", "name", "eth0", "netns", nsX)
	run("-n", nsK, "addr", "add", "198.51.100.1/24", "dev", "eth0")
	run("-n", nsX, "addr", "add", "198.51.100.2/24", "dev", "eth0")
	for _, ns := range []string{nsK, nsX} {
		run("-n", ns, "link", "set", "lo", "up")
		run("-n", ns, "link", "set", "eth0", "up")
	}

	ctx, cancel := context.WithCancel(context.Background())
	h := &holder{}
	polled := make(chan struct{})
	go func() { h.poll(t, ctx, vip, nsK, nsX); close(polled) }()
	t.Cleanup(func() { cancel(); <-polled })

	k := &side{name: "keepalived", ns: nsK}
	x := &side{name: "xlb", ns: nsX}
	t.Cleanup(func() { k.stop(t); x.stop(t) })
	klog, xlog := filepath.Join(dir, "keepalived.log"), filepath.Join(dir, "xlb.log")
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			for _, p := range []string{klog, xlog} {
				b, _ := os.ReadFile(p)
				t.Logf("%s:\n%s", p, b)
			}
		}
	})
	startK := func(prio int) {
		t.Helper()
		conf := filepath.Join(dir, "keepalived.conf")
		err := os.WriteFile(conf, fmt.Appendf(nil, `global_defs { vrrp_version 3 }
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id %d
  priority %d
  advert_int %.1f
  virtual_ipaddress { %s }
}
`, interopVRID, prio, interopAdv.Seconds(), vip), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		k.start(t, exec.Command("ip", "netns", "exec", nsK, kbin, "-n", "-l", "-D", "-P", "-f", conf,
			"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "k.vrrp.pid"), "-c", filepath.Join(dir, "k.chk.pid")), klog)
	}
	startX := func(prio int) {
		t.Helper()
		ps := peerSpec{
			VRRP: vrrp.Config{
				Name: "VI_1", VRID: interopVRID, Priority: prio,
				AdvertInt: interopAdv, Version: 3, Preempt: true,
				Addrs: []netip.Addr{vip.Addr()},
			},
			Announce: announce.Config{
				Name: "vrrp_instance VI_1", Interface: "eth0", Repeat: 2,
				VIPs: []announce.VIP{{Prefix: vip}},
			},
		}
		spec, err := json.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", nsX, os.Args[0], "-test.run=^TestInteropPeer$", "-test.count=1")
		cmd.Env = append(os.Environ(), peerEnv+"="+string(spec))
		x.start(t, cmd, xlog)
	}

	const settle = 5 * time.Second // generous bound on each election
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"keepalived alone becomes master", func() { startK(100) }, nsK},
		{"xlb preempts keepalived", func() { startX(150) }, nsX},
		{"xlb stops gracefully, keepalived takes over", func() { x.stop(t) }, nsK},
		{"lower-priority xlb stays backup", func() { startX(50); time.Sleep(5 * interopAdv) }, nsK},
		{"keepalived stops gracefully, xlb takes over", func() { k.stop(t) }, nsX},
		{"keepalived preempts xlb", func() { startK(100) }, nsK},
	}
	for _, s := range steps {
		s.do()
		h.waitOnly(t, s.want, settle)
		t.Logf("%s: ok", s.name)
	}
	x.stop(t)
	k.stop(t)
	h.mu.Lock()
	longest := h.longest
	h.mu.Unlock()
	t.Logf("longest time both held the VIP: %v", longest)
	if longest > interopAdv {
		t.Errorf("both held the VIP for %v, more than one advertisement interval (%v)", longest, interopAdv)
	}
	xl, _ := os.ReadFile(xlog)
	if strings.Contains(string(xl), "ERROR") {
		t.Errorf("xlb peer reported errors:\n%s", xl)
	}
}
