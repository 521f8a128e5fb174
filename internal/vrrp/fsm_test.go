package vrrp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// For priority 100 and a one-second interval (RFC 5798 §6.1).
const (
	skew100 = 156 * time.Second / 256
	mdi100  = 3*time.Second + skew100
)

func TestTimers(t *testing.T) {
	tests := []struct {
		prio      int
		adv       time.Duration
		skew, mdi time.Duration
	}{
		{100, time.Second, skew100, mdi100},
		{255, time.Second, time.Second / 256, 3*time.Second + time.Second/256},
		{1, 100 * time.Millisecond, 255 * 100 * time.Millisecond / 256, 300*time.Millisecond + 255*100*time.Millisecond/256},
	}
	for _, tt := range tests {
		cfg := baseConfig()
		cfg.Priority, cfg.AdvertInt = tt.prio, tt.adv
		h := newHarness(t, cfg, nil, nil, nil)
		if got := h.inst.skew(); got != tt.skew {
			t.Errorf("priority %d, interval %v: skew %v, want %v", tt.prio, tt.adv, got, tt.skew)
		}
		if got := h.inst.downInterval(); got != tt.mdi {
			t.Errorf("priority %d, interval %v: Master_Down_Interval %v, want %v", tt.prio, tt.adv, got, tt.mdi)
		}
	}
}

func TestBackupBecomesMasterAfterDownInterval(t *testing.T) {
	// Every instance starts in Backup unless it owns the address, as
	// keepalived's "state MASTER" does too.
	h := newHarness(t, baseConfig(), nil, nil, nil)
	h.inst.Start()
	h.wantState(StateBackup)
	h.clock.Advance(mdi100 - time.Nanosecond)
	h.wantState(StateBackup)
	if got := h.conn.take(); len(got) != 0 {
		t.Fatalf("a backup sent %d advertisements", len(got))
	}
	h.clock.Advance(time.Nanosecond)
	h.wantState(StateMaster)
	// One advertisement on entering Master, then one per interval.
	h.clock.Advance(3 * time.Second)
	out := h.conn.take()
	if len(out) != 4 {
		t.Fatalf("sent %d advertisements in the first 3 s as master, want 4", len(out))
	}
	want := &Advertisement{Version: 3, VRID: 51, Priority: 100, AdvertInt: 100, Addrs: []netip.Addr{vip10}}
	if diff := cmp.Diff(sent{Group4, want}, out[0], cmp.AllowUnexported(sent{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("advertisement (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"VI_1:BACKUP", "VI_1:MASTER"}, h.rec.states()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestOwnerStartsAsMaster(t *testing.T) {
	cfg := baseConfig()
	cfg.Priority = 255
	h := newHarness(t, cfg, nil, nil, nil)
	h.inst.Start()
	h.wantState(StateMaster)
	if diff := cmp.Diff([]int{255}, h.conn.priorities()); diff != "" {
		t.Errorf("sent priorities (-want +got):\n%s", diff)
	}
}

func TestBackupElection(t *testing.T) {
	tests := []struct {
		name         string
		peerPrio     int
		preempt      bool
		preemptDelay time.Duration
		// Times (since start) at which the instance is expected to be
		// master, given a peer advertising every second.
		masterAt time.Duration // 0: never within 20 s
	}{
		{"higher peer holds it", 150, true, 0, 0},
		{"equal peer holds it", 100, true, 0, 0},
		{"lower peer is preempted", 50, true, 0, mdi100},
		{"nopreempt keeps the lower master", 50, false, 0, 0},
		// The delay starts at startup; lower adverts reset the down timer
		// until it has passed (the last at 4 s), and the timer runs out a
		// Master_Down_Interval after that.
		{"preempt_delay", 50, true, 5 * time.Second, 4*time.Second + mdi100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Preempt, cfg.PreemptDelay = tt.preempt, tt.preemptDelay
			h := newHarness(t, cfg, nil, nil, nil)
			h.inst.Start()
			var becameMaster time.Duration
			start := h.clock.Now()
			for step := 0; step < 200; step++ {
				if h.inst.State() == StateMaster {
					becameMaster = h.clock.Now().Sub(start)
					break
				}
				if step%10 == 0 {
					h.recv(lower, tt.peerPrio)
				}
				h.clock.Advance(100 * time.Millisecond)
			}
			// Granularity of the loop is 100 ms.
			if tt.masterAt == 0 && becameMaster != 0 || tt.masterAt != 0 && (becameMaster < tt.masterAt || becameMaster > tt.masterAt+100*time.Millisecond) {
				t.Errorf("became master at %v, want %v (0: never)", becameMaster, tt.masterAt)
			}
		})
	}
}

func TestBackupPriorityZeroTakesOverAfterSkew(t *testing.T) {
	h := newHarness(t, baseConfig(), nil, nil, nil)
	h.inst.Start()
	h.clock.Advance(time.Second)
	h.recv(upper, 150)
	h.clock.Advance(time.Second)
	h.recv(upper, PriorityStop)
	h.clock.Advance(skew100 - time.Nanosecond)
	h.wantState(StateBackup)
	h.clock.Advance(time.Nanosecond)
	h.wantState(StateMaster)
}

// masterHarness returns an instance that has just become master, with
// what it sent so far forgotten.
func masterHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := newHarness(t, cfg, nil, nil, nil)
	h.inst.Start()
	h.clock.Advance(h.inst.downInterval())
	h.wantState(StateMaster)
	h.conn.take()
	h.rec.states()
	return h
}

func TestMasterReceives(t *testing.T) {
	tests := []struct {
		name      string
		src       netip.Addr
		prio      int
		wantState State
		// wantSent is what the master sends at once in answer.
		wantSent []int
		mod      func(*Config)
	}{
		{"higher priority", lower, 101, StateBackup, nil, nil},
		{"equal priority from a higher address", upper, 100, StateBackup, nil, nil},
		{"equal priority from a lower address", lower, 100, StateMaster, []int{100}, nil},
		{"lower priority", upper, 99, StateMaster, []int{100}, nil},
		{"priority 0", upper, 0, StateMaster, []int{100}, nil},
		{"lower priority, lower_prio_no_advert", upper, 99, StateMaster, nil,
			func(c *Config) { c.LowerPrioNoAdvert = true }},
		{"higher priority, higher_prio_send_advert", lower, 101, StateBackup, []int{100},
			func(c *Config) { c.HigherPrioSendAdvert = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			h := masterHarness(t, cfg)
			h.clock.Advance(300 * time.Millisecond)
			h.recv(tt.src, tt.prio)
			h.wantState(tt.wantState)
			if diff := cmp.Diff(tt.wantSent, h.conn.priorities()); diff != "" {
				t.Errorf("sent at once (-want +got):\n%s", diff)
			}
			if tt.wantState == StateMaster && tt.wantSent != nil {
				// The advert timer restarted from the answer.
				h.clock.Advance(time.Second - time.Nanosecond)
				if got := h.conn.take(); len(got) != 0 {
					t.Errorf("sent %d advertisements before the restarted interval", len(got))
				}
				h.clock.Advance(time.Nanosecond)
				if got := h.conn.take(); len(got) != 1 {
					t.Errorf("sent %d advertisements at the restarted interval, want 1", len(got))
				}
			}
		})
	}
}

// TestV3LearnsMasterInterval: a v3 backup times the master out with the
// master's interval, not its own (RFC 5798 §6.4.2).
func TestV3LearnsMasterInterval(t *testing.T) {
	h := newHarness(t, baseConfig(), nil, nil, nil)
	h.inst.Start()
	h.recv(upper, 150, func(a *Advertisement) { a.AdvertInt = 50 })
	want := 3*500*time.Millisecond + 156*500*time.Millisecond/256
	h.clock.Advance(want - time.Nanosecond)
	h.wantState(StateBackup)
	h.clock.Advance(time.Nanosecond)
	h.wantState(StateMaster)
	if st := h.inst.Stats(); st.Dropped[ReasonInterval] != 0 {
		t.Errorf("v3 dropped a packet for its interval: %v", st.Dropped)
	}
}

// TestInvalidPacketsDropped: each invalid packet is counted by reason and
// does not hold the backup down, so it takes over on the original
// schedule.
func TestInvalidPacketsDropped(t *testing.T) {
	v2 := func() Config {
		c := baseConfig()
		c.Version = 2
		c.PassAuth, c.Password = true, "secret"
		return c
	}
	tests := []struct {
		name   string
		cfg    Config
		packet func(h *harness) ([]byte, netip.Addr, int)
		reason Reason // 0: counted as another VRID
	}{
		{"ttl 254", baseConfig(), func(h *harness) ([]byte, netip.Addr, int) { return h.advert(upper, 200), upper, 254 }, ReasonTTL},
		{"bad checksum", baseConfig(), func(h *harness) ([]byte, netip.Addr, int) {
			b := h.advert(upper, 200)
			b[6] ^= 0xff
			return b, upper, 255
		}, ReasonChecksum},
		{"wrong vrid", baseConfig(), func(h *harness) ([]byte, netip.Addr, int) {
			return h.advert(upper, 200, func(a *Advertisement) { a.VRID = 52 }), upper, 255
		}, 0},
		{"other addresses", baseConfig(), func(h *harness) ([]byte, netip.Addr, int) {
			return h.advert(upper, 200, func(a *Advertisement) { a.Addrs = []netip.Addr{vip11} }), upper, 255
		}, ReasonAddrList},
		{"v2 packet to a v3 instance", baseConfig(), func(h *harness) ([]byte, netip.Addr, int) {
			return h.advert(upper, 200, func(a *Advertisement) { a.Version, a.AdvertInt = 2, 1 }), upper, 255
		}, ReasonVersion},
		{"own packet looped back", baseConfig(), func(h *harness) ([]byte, netip.Addr, int) { return h.advert(self, 200), self, 255 }, ReasonOwnPacket},
		{"check_unicast_src, not a peer", unicastChecked(), func(h *harness) ([]byte, netip.Addr, int) { return h.advert(upper, 200), upper, 255 }, ReasonSource},
		{"v2 wrong password", v2(), func(h *harness) ([]byte, netip.Addr, int) {
			return h.advert(upper, 200, func(a *Advertisement) { a.AuthData = pass("guess") }), upper, 255
		}, ReasonAuth},
		{"v2 no authentication", v2(), func(h *harness) ([]byte, netip.Addr, int) {
			return h.advert(upper, 200, func(a *Advertisement) { a.AuthType, a.AuthData = 0, [8]byte{} }), upper, 255
		}, ReasonAuth},
		{"v2 interval mismatch", v2(), func(h *harness) ([]byte, netip.Addr, int) {
			return h.advert(upper, 200, func(a *Advertisement) { a.AdvertInt = 2 }), upper, 255
		}, ReasonInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg, nil, nil, nil)
			h.inst.Start()
			for range 3 {
				h.clock.Advance(time.Second)
				b, src, ttl := tt.packet(h)
				h.inst.Receive(b, src, h.inst.dsts[0], ttl)
			}
			h.clock.Advance(mdi100 - 3*time.Second)
			h.wantState(StateMaster)
			st := h.inst.Stats()
			want := Stats{Received: 3, Sent: st.Sent, Dropped: map[Reason]uint64{}}
			if tt.reason == 0 {
				want.OtherVRID = 3
			} else {
				want.Dropped[tt.reason] = 3
			}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
	// The same packets, made valid, do hold the backup down and are not
	// dropped: the cases above fail for the reason they name.
	for _, c := range []struct {
		name string
		cfg  Config
		src  netip.Addr
	}{
		{"valid v2 control", v2(), upper},
		{"check_unicast_src, the peer", unicastChecked(), lower},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.cfg, nil, nil, nil)
			h.inst.Start()
			for range 10 {
				h.clock.Advance(time.Second)
				h.recv(c.src, 200)
			}
			h.wantState(StateBackup)
			if d := h.inst.Stats().Dropped; d[ReasonSource] != 0 || d[ReasonAuth] != 0 {
				t.Errorf("dropped valid advertisements: %v", d)
			}
		})
	}
}

func TestTrackInterface(t *testing.T) {
	cfg := baseConfig()
	cfg.TrackInterfaces = []Track{{Name: "eth1"}, {Name: "eth2", Weight: -30}, {Name: "eth3", Weight: 20}}
	h := masterHarness(t, cfg)
	if got := h.inst.Priority(); got != 120 {
		t.Fatalf("priority with eth3 up %d, want 120", got)
	}
	h.inst.SetInterface("eth2", false)
	h.inst.SetInterface("eth3", false)
	h.wantState(StateMaster)
	if got := h.inst.Priority(); got != 70 {
		t.Errorf("priority with eth2 and eth3 down %d, want 70", got)
	}
	h.clock.Advance(time.Second)
	if diff := cmp.Diff([]int{70}, h.conn.priorities()); diff != "" {
		t.Errorf("next advertisement (-want +got):\n%s", diff)
	}
	h.inst.SetInterface("unknown", false)
	h.inst.SetInterface("eth1", false)
	h.wantState(StateFault)
	// Leaving Master for Fault hands over at once with priority 0.
	if diff := cmp.Diff([]int{0}, h.conn.priorities()); diff != "" {
		t.Errorf("sent on fault (-want +got):\n%s", diff)
	}
	h.clock.Advance(10 * time.Second)
	h.recv(upper, 1)
	h.wantState(StateFault)
	if got := h.conn.take(); len(got) != 0 {
		t.Errorf("a faulty instance sent %d advertisements", len(got))
	}
	h.inst.SetInterface("eth1", true)
	h.wantState(StateBackup)
	if diff := cmp.Diff([]string{"VI_1:FAULT", "VI_1:BACKUP"}, h.rec.states()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestTrackScriptWeights(t *testing.T) {
	tests := []struct {
		name   string
		prio   int
		tracks []Track
		down   []string
		want   int
		fault  bool
	}{
		{"positive weight added while up", 100, []Track{{Name: "a", Weight: 10}}, nil, 110, false},
		{"positive weight dropped when down", 100, []Track{{Name: "a", Weight: 10}}, []string{"a"}, 100, false},
		{"negative weight ignored while up", 100, []Track{{Name: "a", Weight: -10}}, nil, 100, false},
		{"negative weight subtracted when down", 100, []Track{{Name: "a", Weight: -10}}, []string{"a"}, 90, false},
		{"weights add up", 100, []Track{{Name: "a", Weight: 10}, {Name: "b", Weight: -40}, {Name: "c", Weight: 5}}, []string{"b"}, 75, false},
		{"clamped below 255", 250, []Track{{Name: "a", Weight: 10}}, nil, 254, false},
		{"clamped above 0", 5, []Track{{Name: "a", Weight: -10}}, []string{"a"}, 1, false},
		{"owner ignores weights", 255, []Track{{Name: "a", Weight: -10}}, []string{"a"}, 255, false},
		{"weight 0 down is a fault", 100, []Track{{Name: "a"}}, []string{"a"}, 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Priority, cfg.TrackScripts = tt.prio, tt.tracks
			h := newHarness(t, cfg, nil, nil, nil)
			h.inst.Start()
			for _, d := range tt.down {
				h.inst.SetScript(d, false)
			}
			if got := h.inst.Priority(); got != tt.want {
				t.Errorf("priority %d, want %d", got, tt.want)
			}
			if got := h.inst.State() == StateFault; got != tt.fault {
				t.Errorf("fault %v, want %v", got, tt.fault)
			}
		})
	}
}

// TestScriptWeightHandsOver: a master whose script fails advertises its
// lower priority, and a preempting backup then takes over.
func TestScriptWeightHandsOver(t *testing.T) {
	clock := newFakeClock()
	cfgA := baseConfig()
	cfgA.Name, cfgA.Priority, cfgA.TrackScripts = "A", 100, []Track{{Name: "chk", Weight: -20}}
	a := newHarness(t, cfgA, nil, nil, clock)
	cfgB := baseConfig()
	cfgB.Name, cfgB.Priority = "B", 90
	b := newHarness(t, cfgB, nil, nil, clock)
	b.conn.local = upper
	link(t, clock, a, b)
	a.inst.Start()
	clock.Advance(mdi100)
	b.inst.Start()
	clock.Advance(10 * time.Second)
	a.wantState(StateMaster)
	b.wantState(StateBackup)
	a.inst.SetScript("chk", false)
	clock.Advance(10 * time.Second)
	a.wantState(StateBackup)
	b.wantState(StateMaster)
}

// link delivers what each instance sends to the others, after every
// clock step.
func link(t *testing.T, clock *fakeClock, hs ...*harness) {
	t.Helper()
	var pump func()
	pump = func() {
		for again := true; again; {
			again = false
			for _, from := range hs {
				for _, s := range from.conn.take() {
					again = true
					for _, to := range hs {
						if to == from {
							continue
						}
						b, err := s.adv.Marshal(from.conn.local, s.dst)
						if err != nil {
							t.Fatal(err)
						}
						to.inst.Receive(b, from.conn.local, s.dst, 255)
					}
				}
			}
		}
		clock.AfterFunc(10*time.Millisecond, pump)
	}
	clock.AfterFunc(10*time.Millisecond, pump)
}

func TestSyncGroup(t *testing.T) {
	rec := &recorder{}
	group := NewGroup(GroupConfig{Name: "G", Instances: []string{"A", "B"}}, rec.onGroup)
	clock := newFakeClock()
	cfgA := baseConfig()
	cfgA.Name, cfgA.TrackInterfaces = "A", []Track{{Name: "eth1"}}
	cfgB := baseConfig()
	cfgB.Name, cfgB.VRID, cfgB.Priority = "B", 52, 50
	a := newHarness(t, cfgA, group, rec, clock)
	b := newHarness(t, cfgB, group, rec, clock)
	a.inst.Start()
	b.inst.Start()
	if diff := cmp.Diff([]string{"A:BACKUP", "B:BACKUP"}, rec.states()); diff != "" {
		t.Errorf("start (-want +got):\n%s", diff)
	}
	// A times out first (higher priority, shorter skew) and drags B along.
	clock.Advance(mdi100)
	if diff := cmp.Diff([]string{"A:MASTER", "B:MASTER"}, rec.states()); diff != "" {
		t.Errorf("takeover (-want +got):\n%s", diff)
	}
	// A higher peer on B's VRID only: the whole group yields.
	b.recv(upper, 200)
	if diff := cmp.Diff([]string{"B:BACKUP", "A:BACKUP"}, rec.states()); diff != "" {
		t.Errorf("preempted (-want +got):\n%s", diff)
	}
	// A fault on A faults B, and B leaves Fault only with A.
	a.inst.SetInterface("eth1", false)
	if diff := cmp.Diff([]string{"A:FAULT", "B:FAULT"}, rec.states()); diff != "" {
		t.Errorf("fault (-want +got):\n%s", diff)
	}
	a.inst.SetInterface("eth1", true)
	if diff := cmp.Diff([]string{"A:BACKUP", "B:BACKUP"}, rec.states()); diff != "" {
		t.Errorf("recovery (-want +got):\n%s", diff)
	}
	// The group reports each change once, from the member that moved
	// it (at startup each member starts on its own account), and
	// recovery from Fault member by member, as keepalived's group
	// notify scripts hear of it.
	want := []string{"G:BACKUP", "G:BACKUP", "G:MASTER", "G:BACKUP", "G:FAULT", "G:BACKUP", "G:BACKUP"}
	if diff := cmp.Diff(want, rec.groupStates()); diff != "" {
		t.Errorf("group changes (-want +got):\n%s", diff)
	}
}

// TestGracefulStop: a stopping master announces priority 0 and keeps its
// addresses until the new master is heard.
func TestGracefulStop(t *testing.T) {
	t.Run("new master heard", func(t *testing.T) {
		h := masterHarness(t, baseConfig())
		done := h.inst.Stop()
		h.wantState(StateReleasing)
		if diff := cmp.Diff([]int{0}, h.conn.priorities()); diff != "" {
			t.Errorf("sent on stop (-want +got):\n%s", diff)
		}
		h.clock.Advance(time.Second)
		if got := h.conn.take(); len(got) != 0 {
			t.Errorf("a releasing master sent %d advertisements", len(got))
		}
		h.recv(upper, PriorityStop) // another leaver is not a new master
		h.wantState(StateReleasing)
		h.recv(upper, 50)
		h.wantState(StateStopped)
		select {
		case <-done:
		default:
			t.Error("Stop's channel is open after StateStopped")
		}
		if diff := cmp.Diff([]string{"VI_1:RELEASING", "VI_1:STOP"}, h.rec.states()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
	t.Run("nobody answers", func(t *testing.T) {
		h := masterHarness(t, baseConfig())
		h.inst.Stop()
		h.clock.Advance(mdi100 - time.Nanosecond)
		h.wantState(StateReleasing)
		h.clock.Advance(time.Nanosecond)
		h.wantState(StateStopped)
	})
	t.Run("backup stops at once", func(t *testing.T) {
		h := newHarness(t, baseConfig(), nil, nil, nil)
		h.inst.Start()
		h.inst.Stop()
		h.wantState(StateStopped)
		if got := h.conn.take(); len(got) != 0 {
			t.Errorf("a stopping backup sent %d advertisements", len(got))
		}
	})
	if !StateReleasing.HoldsAddresses() || !StateMaster.HoldsAddresses() || StateBackup.HoldsAddresses() || StateStopped.HoldsAddresses() {
		t.Error("HoldsAddresses: only Master and Releasing hold the addresses")
	}
}

// TestRun drives the instance through Run and the Conn, as the daemon does.
func TestRun(t *testing.T) {
	clock := newFakeClock()
	conn := newFakeConn(t, self)
	rec := &recorder{}
	inst, err := New(baseConfig(), Options{Conn: conn, Clock: clock, Logger: quiet, OnChange: rec.onChange})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- inst.Run(ctx) }()
	h := &harness{t: t, clock: clock, conn: conn, rec: rec, inst: inst}
	deliver := func(src netip.Addr, prio int) {
		<-conn.read // the reader is waiting
		conn.in <- inPacket{h.advert(src, prio), src, Group4, 255}
		<-conn.read // and has handled it
	}
	deliver(upper, 150)
	if got := inst.Stats().Received; got != 1 {
		t.Fatalf("received %d packets through Run, want 1", got)
	}
	clock.Advance(mdi100)
	h.wantState(StateMaster)
	cancel()
	// Run waits in Releasing for the new master.
	for inst.State() != StateReleasing {
		time.Sleep(time.Millisecond)
	}
	conn.read <- struct{}{} // deliver waits for a fresh ReadFrom
	deliver(upper, 150)
	if err := <-errc; err != nil {
		t.Errorf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"VI_1:BACKUP", "VI_1:MASTER", "VI_1:RELEASING", "VI_1:STOP"}, rec.states()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestNewInvalid: New refuses what it cannot speak, naming the instance.
// The configuration's ranges (version, virtual_router_id, priority,
// addresses, authentication) are internal/service's to check.
func TestNewInvalid(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"v2 sub-second interval", func(c *Config) { c.Version, c.AdvertInt = 2, 500*time.Millisecond }, "advert_int 500ms"},
		{"family", func(c *Config) {
			c.Addrs = []netip.Addr{netip.MustParseAddr("2001:db8::10")}
		}, "not of the family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.mod(&cfg)
			_, err := New(cfg, Options{Conn: newFakeConn(t, self), Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "vrrp_instance VI_1: ") {
				t.Errorf("New: %v, want an error naming the instance and %q", err, tt.want)
			}
		})
	}
}

// TestMasterTakesAddressesBeforeAdvertising checks the order of a
// takeover: the caller is told (and so adds the addresses and sends
// gratuitous ARP) before the first advertisement leaves, because a
// releasing master lets go when it hears that advertisement.
func TestMasterTakesAddressesBeforeAdvertising(t *testing.T) {
	tests := []struct {
		name     string
		priority int
		// to master drives the instance from Backup to Master.
		toMaster func(h *harness)
	}{
		{"master down timer", 100, func(h *harness) { h.clock.Advance(mdi100) }},
		{"master released", 100, func(h *harness) {
			h.recv(upper, 150)
			h.recv(upper, PriorityStop)
			h.clock.Advance(skew100)
		}},
		{"address owner at startup", PriorityOwner, func(*harness) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Priority = tt.priority
			conn := newFakeConn(t, self)
			sentAtMaster := -1
			clock := newFakeClock()
			inst, err := New(cfg, Options{Conn: conn, Clock: clock, Logger: quiet,
				OnChange: func(e Event) {
					if e.To == StateMaster {
						conn.mu.Lock()
						sentAtMaster = len(conn.out)
						conn.mu.Unlock()
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			h := &harness{t: t, clock: clock, conn: conn, inst: inst}
			inst.Start()
			tt.toMaster(h)
			h.wantState(StateMaster)
			if sentAtMaster != 0 {
				t.Errorf("%d advertisements had left when the caller heard of MASTER, want 0", sentAtMaster)
			}
			if got := conn.priorities(); len(got) != 1 || got[0] != tt.priority {
				t.Errorf("sent priorities %v on becoming master, want [%d]", got, tt.priority)
			}
		})
	}
}

// TestHandoffResume replaces an instance as a reload does: the old one
// hands off silently, the new one resumes its state. A master stays
// master with no gap in advertisements, no priority-0 release and no
// notify script; the new priority is what the peers hear next.
func TestHandoffResume(t *testing.T) {
	tests := []struct {
		name string
		// old runs to this state before the handoff.
		master bool
		new    func(*Config)
		// wantNew: the successor's events after Resume.
		wantNew   []string
		wantState State
		wantPrio  []int // the successor's advertisements at once
		wantRuns  int   // changes the successor reported for notify scripts
	}{
		{name: "master stays master", master: true, new: func(c *Config) { c.Priority = 120 },
			wantNew: []string{"VI_1:MASTER"}, wantState: StateMaster, wantPrio: []int{120}},
		{name: "backup starts as backup", new: func(c *Config) {},
			wantNew: []string{"VI_1:BACKUP"}, wantState: StateBackup, wantRuns: 1},
		{name: "a faulty master goes to fault", master: true,
			new: func(c *Config) {
				c.TrackInterfaces = []Track{{Name: "eth1"}}
			},
			wantNew: []string{"VI_1:FAULT"}, wantState: StateFault, wantRuns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			old := newHarness(t, baseConfig(), nil, nil, clock)
			old.inst.Start()
			if tt.master {
				clock.Advance(mdi100)
				old.wantState(StateMaster)
			}
			old.conn.take()
			old.rec.states()
			old.rec.takeNotes()

			cfg := baseConfig()
			tt.new(&cfg)
			next := newHarness(t, cfg, nil, nil, clock)
			next.inst.SetInterface("eth1", false)
			prev := old.inst.Handoff()
			next.inst.Resume(prev)
			next.wantState(tt.wantState)
			if diff := cmp.Diff(tt.wantNew, next.rec.states()); diff != "" {
				t.Errorf("successor's events (-want +got):\n%s", diff)
			}
			if got := next.rec.takeNotes(); len(got) != tt.wantRuns {
				t.Errorf("successor reported %v for notify scripts, want %d", got, tt.wantRuns)
			}

			select {
			case <-old.inst.Stop():
			default:
				t.Fatal("the handed-off instance is not stopped")
			}
			clock.Advance(10 * time.Second)
			if got := old.conn.take(); len(got) != 0 {
				t.Errorf("the handed-off instance sent %d advertisements, want none", len(got))
			}
			if got := old.rec.states(); len(got) != 0 {
				t.Errorf("the handed-off instance reported %v, want nothing (its addresses stay)", got)
			}
			if got := old.rec.takeNotes(); len(got) != 0 {
				t.Errorf("the handed-off instance reported %v for notify scripts", got)
			}
			if tt.wantPrio != nil {
				got := next.conn.priorities()
				if len(got) < 11 || got[0] != tt.wantPrio[0] {
					t.Errorf("successor's advertisements %v, want %d at once and every second after", got, tt.wantPrio[0])
				}
			}
		})
	}
}

// TestSyncGroupResume: a master sync group handed over on a reload
// resumes as master, member by member, with no notify script of the
// group or its members, and no member passes through BACKUP.
func TestSyncGroupResume(t *testing.T) {
	clock := newFakeClock()
	build := func() (*recorder, *harness, *harness) {
		rec := &recorder{}
		group := NewGroup(GroupConfig{Name: "G", Instances: []string{"A", "B"}}, rec.onGroup)
		cfgA := baseConfig()
		cfgA.Name = "A"
		cfgB := baseConfig()
		cfgB.Name, cfgB.VRID, cfgB.Priority = "B", 52, 50
		return rec, newHarness(t, cfgA, group, rec, clock), newHarness(t, cfgB, group, rec, clock)
	}
	oldRec, oldA, oldB := build()
	oldA.inst.Start()
	oldB.inst.Start()
	clock.Advance(mdi100)
	oldA.wantState(StateMaster)
	oldB.wantState(StateMaster)
	oldRec.states()
	oldRec.takeNotes()

	rec, a, b := build()
	prevA, prevB := oldA.inst.Handoff(), oldB.inst.Handoff()
	a.inst.Resume(prevA)
	b.inst.Resume(prevB)
	a.wantState(StateMaster)
	b.wantState(StateMaster)
	if diff := cmp.Diff([]string{"A:MASTER", "B:MASTER"}, rec.states()); diff != "" {
		t.Errorf("resume (-want +got):\n%s", diff)
	}
	if notes := rec.takeNotes(); len(notes) != 0 {
		t.Errorf("a resumed group reported %v for notify scripts", notes)
	}
	if got := oldRec.states(); len(got) != 0 {
		t.Errorf("the handed-over group reported %v", got)
	}
}

// TestSkipCheckAdvAddr: with skip_check_adv_addr a backup keeps following
// a master whose address list changed (its configuration was reloaded
// first), but only that master: another router's advertisement with a
// different list is still dropped. Without it the backup drops them all
// and takes over, as keepalived does.
func TestSkipCheckAdvAddr(t *testing.T) {
	moreVIPs := func(a *Advertisement) { a.Addrs = []netip.Addr{vip10, vip11} }
	tests := []struct {
		name string
		skip bool
		// first is the source of the advertisements with the configured
		// list; then comes the sender of the changed list.
		first, then netip.Addr
		wantMaster  bool
	}{
		{"same master, skipping", true, upper, upper, false},
		{"same master, checking", false, upper, upper, true},
		{"another router, skipping", true, upper, lower, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.SkipCheckAdvAddr = tt.skip
			h := newHarness(t, cfg, nil, nil, nil)
			h.inst.Start()
			h.recv(tt.first, 150)
			for range 10 {
				h.clock.Advance(time.Second)
				h.recv(tt.then, 150, moreVIPs)
			}
			if got := h.inst.State() == StateMaster; got != tt.wantMaster {
				t.Errorf("master %v after 10 s of changed lists from %v, want %v (drops %v)", got, tt.then, tt.wantMaster, h.inst.Stats().Dropped)
			}
		})
	}
}

// unicastChecked is an instance with one unicast peer (lower) and
// check_unicast_src.
func unicastChecked() Config {
	c := baseConfig()
	c.UnicastPeers, c.CheckUnicastSrc = []netip.Addr{lower}, true
	return c
}

// TestLowerPriorityReannounce: with LowerPrioReannounce (keepalived's
// garp_lower_prio_repeat) a master that hears a lower priority asks for
// its addresses to be announced again; a higher priority or a priority-0
// release does not.
func TestLowerPriorityReannounce(t *testing.T) {
	for _, reannounce := range []bool{false, true} {
		t.Run(fmt.Sprint(reannounce), func(t *testing.T) {
			cfg := baseConfig()
			cfg.LowerPrioReannounce = reannounce
			clock := newFakeClock()
			calls := 0
			inst, err := New(cfg, Options{Conn: newFakeConn(t, self), Clock: clock, Logger: quiet,
				OnLowerPriority: func() { calls++ }})
			if err != nil {
				t.Fatal(err)
			}
			h := &harness{t: t, clock: clock, conn: inst.conn.(*fakeConn), rec: &recorder{}, inst: inst}
			inst.Start()
			clock.Advance(mdi100)
			h.wantState(StateMaster)
			h.recv(upper, 0)
			h.recv(upper, 50)
			h.recv(lower, 99)
			h.recv(upper, 200)
			h.wantState(StateBackup)
			want := 0
			if reannounce {
				want = 2
			}
			if calls != want {
				t.Errorf("OnLowerPriority called %d times, want %d", calls, want)
			}
		})
	}
}
