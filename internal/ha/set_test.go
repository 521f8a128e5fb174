package ha

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/service"
	"github.com/xlb-project/xlb/internal/testutil"
	"github.com/xlb-project/xlb/internal/vrrp"
)

func TestResumeStates(t *testing.T) {
	const (
		I = vrrp.StateInit
		B = vrrp.StateBackup
		M = vrrp.StateMaster
		F = vrrp.StateFault
	)
	for _, tc := range []struct {
		name   string
		handed []vrrp.State
		groups []string
		want   []vrrp.State
	}{
		{"each as it was", []vrrp.State{M, B, F, I}, []string{"", "", "", ""}, []vrrp.State{M, B, F, I}},
		{"a new member of a master group", []vrrp.State{M, I}, []string{"G", "G"}, []vrrp.State{M, M}},
		{"a backup group stays backup", []vrrp.State{B, I}, []string{"G", "G"}, []vrrp.State{B, I}},
		{"only the master's group", []vrrp.State{M, I, B, I}, []string{"G", "G", "H", ""}, []vrrp.State{M, M, B, I}},
		{"a lone master does not pull in ungrouped instances", []vrrp.State{M, I}, []string{"", ""}, []vrrp.State{M, I}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resumeStates(tc.handed, tc.groups); !slices.Equal(got, tc.want) {
				t.Errorf("resumeStates(%v, %q) = %v, want %v", tc.handed, tc.groups, got, tc.want)
			}
		})
	}
}

// vrrpConfig is one IPv4 VRRPv2 instance in sync group G, with notify
// scripts as nobody for the instance and as root for the group. It
// tracks no interface: the tests have none to follow.
func vrrpConfig() *service.Config {
	return &service.Config{
		VRRP: []service.VRRPInstance{{
			Name: "VI_1", State: "BACKUP", VirtualRouterID: 51, Priority: 100,
			AdvertInt: time.Second, Version: 2, Preempt: true, DontTrackPrimary: true,
			VirtualIPs:       []service.VirtualIP{{Prefix: netip.MustParsePrefix("192.0.2.10/32")}},
			GARPMasterRepeat: 1,
			Notify:           service.Notify{Master: "/bin/true master", Backup: "/bin/true backup", Stop: "/bin/true stop", User: "nobody"},
		}},
		SyncGroups: []service.SyncGroup{{Name: "G", Instances: []string{"VI_1"}, Notify: service.Notify{Any: "/bin/true", User: "root"}}},
	}
}

// TestSetLifecycle runs a set through start, election, a reload that
// changes the priority, and a graceful stop, as the daemon does, on a
// fake host: what it does to the addresses, which notify scripts it runs
// as whom, what it advertises and what State reports.
func TestSetLifecycle(t *testing.T) {
	h := newFakeHost(t)
	var logs testutil.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	first, err := prepare(vrrpConfig(), "eth0", log, h.host())
	if err != nil {
		t.Fatal(err)
	}
	first.Start(nil)
	if diff := cmp.Diff([]string{
		"del 192.0.2.10/32 dev eth0", // left by an earlier run, maybe
		"run as nobody: /bin/true backup",
		"run as root: /bin/true GROUP G BACKUP 100",
	}, h.take()); diff != "" {
		t.Errorf("start (-want +got):\n%s", diff)
	}

	h.clock.Advance(4 * time.Second) // Master_Down_Interval: 3 s and the skew
	if diff := cmp.Diff([]string{
		"add 192.0.2.10/32 dev eth0",
		"announce 192.0.2.10 dev eth0",
		"run as nobody: /bin/true master",
		"run as root: /bin/true GROUP G MASTER 100",
	}, h.take()); diff != "" {
		t.Errorf("election (-want +got):\n%s", diff)
	}
	state := first.State()
	if len(state) != 1 || state[0].Sent == 0 {
		t.Fatalf("State %+v, want one instance that has advertised", state)
	}
	want := api.VRRPInstance{
		Name: "VI_1", Interface: "eth0", VRID: 51, State: "MASTER", Priority: 100, BasePriority: 100,
		VIPs: []string{"192.0.2.10/32"}, Sent: state[0].Sent,
	}
	if diff := cmp.Diff(want, state[0]); diff != "" {
		t.Errorf("State (-want +got):\n%s", diff)
	}

	// A reload with a new priority: the master stays master, its
	// address never leaves, no script runs, and the peers hear the new
	// priority at once.
	cfg := vrrpConfig()
	cfg.VRRP[0].Priority = 120
	second, err := prepare(cfg, "eth0", log, h.host())
	if err != nil {
		t.Fatal(err)
	}
	second.Start(first)
	first.Wait()
	for _, e := range h.take() {
		if strings.HasPrefix(e, "del ") || strings.HasPrefix(e, "run ") {
			t.Errorf("the reload did %q", e)
		}
	}
	firstConn, secondConn := h.conns[0], h.conns[1]
	if !firstConn.isClosed() {
		t.Error("the replaced set's connection is open")
	}
	if got := firstConn.priorities(); len(got) == 0 || slices.Contains(got, 0) {
		t.Errorf("the replaced set advertised %v, want its priority and no release", got)
	}
	if got := secondConn.priorities(); !slices.Equal(got, []int{120}) {
		t.Errorf("the new set advertised %v at once, want [120]", got)
	}
	if got := second.State(); len(got) != 1 || got[0].State != "MASTER" || got[0].Priority != 120 || got[0].BasePriority != 120 {
		t.Errorf("State after the reload %+v, want MASTER at 120", got)
	}

	// A graceful stop: priority 0, then the address goes once no new
	// master is heard within Master_Down_Interval.
	stopped := make(chan struct{})
	go func() {
		second.Stop()
		close(stopped)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for done := false; !done; {
		select {
		case <-stopped:
			done = true
		case <-time.After(time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("Stop did not return")
			}
			h.clock.Advance(100 * time.Millisecond)
		}
	}
	if got := secondConn.priorities(); len(got) == 0 || got[0] != 0 {
		t.Errorf("advertised %v on stopping, want priority 0 first", got)
	}
	if !secondConn.isClosed() {
		t.Error("the stopped set's connection is open")
	}
	if diff := cmp.Diff([]string{
		"del 192.0.2.10/32 dev eth0",
		"run as nobody: /bin/true stop",
	}, h.take()); diff != "" {
		t.Errorf("stop (-want +got):\n%s", diff)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs.String())
	}
}

// TestPrepareFails: a configuration Prepare refuses leaves no connection
// open, and the error names the instance.
func TestPrepareFails(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*service.Config, *fakeHost)
		want   string
	}{
		{"cannot listen", func(c *service.Config, h *fakeHost) {
			c.VRRP[1].Interface = "eth9"
			h.failListen = "eth9"
		}, "vrrp_instance VI_2: no such device"},
		{"the state machine refuses", func(c *service.Config, _ *fakeHost) {
			c.VRRP[1].AdvertInt = 500 * time.Millisecond
		}, "vrrp_instance VI_2: advert_int 500ms is outside 1s..4m15s for VRRPv2"},
		{"a notify script does not split", func(c *service.Config, _ *fakeHost) {
			c.VRRP[1].Notify.Master = `/bin/true "open`
		}, `vrrp_instance VI_2: notify_master "/bin/true \"open": unterminated " quote`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := vrrpConfig()
			second := cfg.VRRP[0]
			second.Name, second.VirtualRouterID = "VI_2", 52
			cfg.VRRP = append(cfg.VRRP, second)
			h := newFakeHost(t)
			tt.modify(cfg, h)
			set, err := prepare(cfg, "eth0", quiet, h.host())
			if err == nil || err.Error() != tt.want {
				t.Errorf("prepare: %v, want %s", err, tt.want)
			}
			if set != nil {
				t.Error("prepare returned a set with its error")
			}
			for _, c := range h.conns {
				if !c.isClosed() {
					t.Errorf("the connection on %s is left open", c.iface)
				}
			}
			if got := h.take(); len(got) != 0 {
				t.Errorf("a refused configuration did %v", got)
			}
		})
	}
}

// TestAbort: a prepared set that never runs closes its connections and
// touches nothing else.
func TestAbort(t *testing.T) {
	h := newFakeHost(t)
	set, err := prepare(vrrpConfig(), "eth0", quiet, h.host())
	if err != nil {
		t.Fatal(err)
	}
	set.Abort()
	set.Wait()
	if len(h.conns) != 1 || !h.conns[0].isClosed() {
		t.Errorf("connections %v, want one, closed", h.conns)
	}
	h.clock.Advance(time.Minute)
	if got := h.take(); len(got) != 0 {
		t.Errorf("an aborted set did %v", got)
	}
	if got := h.conns[0].priorities(); len(got) != 0 {
		t.Errorf("an aborted set advertised %v", got)
	}
}
