package service

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestServiceKeyString(t *testing.T) {
	tests := []struct {
		key  ServiceKey
		want string
	}{
		{ServiceKey{netip.MustParseAddr("192.0.2.10"), 80, TCP}, "192.0.2.10:80/tcp"},
		{ServiceKey{netip.MustParseAddr("2001:db8::1"), 80, TCP}, "[2001:db8::1]:80/tcp"},
		{ServiceKey{netip.MustParseAddr("192.0.2.10"), 0, UDP}, "192.0.2.10:0/udp"},
	}
	for _, tt := range tests {
		if got := tt.key.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestPosString(t *testing.T) {
	for _, tt := range []struct {
		pos  Pos
		want string
	}{
		{Pos{"a.conf", 3}, "a.conf:3"},
		{Pos{"a.conf", 0}, "a.conf"},
		{Pos{}, ""},
	} {
		if got := tt.pos.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.pos, got, tt.want)
		}
	}
}

func TestSchedulerPlan(t *testing.T) {
	tests := []struct {
		sched      string
		sourceOnly bool
		exact      bool
		wantErr    bool
	}{
		{"maglev", false, true, false},
		{"mh", true, true, false},
		{"sh", true, true, false},
		{"rr", false, false, false},
		{"wrr", false, false, false},
		{"lc", false, false, false},
		{"wlc", false, false, false},
		{"lblc", false, false, false},
		{"lblcr", false, false, false},
		{"dh", false, false, false},
		{"sed", false, false, false},
		{"nq", false, false, false},
		{"fo", false, false, false},
		{"ovf", false, false, false},
		{"twos", false, false, false},
		{"WRR", false, false, true},
		{"", false, false, true},
		{"random", false, false, true},
	}
	for _, tt := range tests {
		sourceOnly, note, err := SchedulerPlan(tt.sched)
		if (err != nil) != tt.wantErr {
			t.Errorf("SchedulerPlan(%q) error = %v, want error %v", tt.sched, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if sourceOnly != tt.sourceOnly || (note == "") != tt.exact {
			t.Errorf("SchedulerPlan(%q) = %v, %q; want source-only %v, exact %v", tt.sched, sourceOnly, note, tt.sourceOnly, tt.exact)
		}
	}
}

func validService() Service {
	return Service{
		VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Proto: TCP, Scheduler: "wrr",
		DelayLoop: 3 * time.Second, Source: Pos{"c", 1},
		Backends: []Backend{{
			Addr: netip.MustParseAddr("198.51.100.7"), Port: 80, Weight: 1, Source: Pos{"c", 5},
			Checks: []Check{{
				Kind: CheckTCP, ConnectTimeout: time.Second, Retry: 1, DelayBeforeRetry: time.Second,
				DelayLoop: 3 * time.Second, Source: Pos{"c", 7},
			}},
		}},
	}
}

func validInstance() VRRPInstance {
	return VRRPInstance{
		Name: "VI_1", State: "MASTER", Interface: "eth0", VirtualRouterID: 51, Priority: 100,
		AdvertInt: time.Second, Version: 2, Preempt: true, Source: Pos{"c", 20},
		VirtualIPs: []VirtualIP{{Prefix: netip.MustParsePrefix("192.0.2.10/24")}},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []string
	}{
		{"valid", func(c *Config) {}, nil},
		{"negative weight", func(c *Config) { c.Services[0].Backends[0].Weight = -3 }, []string{
			"c:5: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: weight -3 is negative",
		}},
		{"duplicate backend", func(c *Config) {
			b := c.Services[0].Backends[0]
			b.Source.Line = 9
			c.Services[0].Backends = append(c.Services[0].Backends, b)
		}, []string{
			"c:9: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: duplicate of the backend at c:5",
		}},
		{"duplicate service", func(c *Config) {
			s := validService()
			s.Source.Line = 30
			c.Services = append(c.Services, s)
		}, []string{"c:30: service 192.0.2.10:80/tcp: duplicate of the service at c:1"}},
		{"port 0 without persistence", func(c *Config) {
			c.Services[0].Port = 0
			c.Services[0].Backends[0].Port = 0
		}, []string{"c:1: service 192.0.2.10:0/tcp: port 0 (all ports) needs persistence"}},
		{"unknown scheduler", func(c *Config) { c.Services[0].Scheduler = "fastest" }, []string{
			`c:1: service 192.0.2.10:80/tcp: unknown scheduler "fastest" (want maglev, mh, sh, rr, wrr, lc, wlc, lblc, lblcr, dh, sed, nq, fo, ovf or twos)`,
		}},
		{"no protocol", func(c *Config) { c.Services[0].Proto = 0 }, []string{
			"c:1: service 192.0.2.10:80/proto(0): protocol must be tcp or udp",
		}},
		{"backend family", func(c *Config) { c.Services[0].Backends[0].Addr = netip.MustParseAddr("2001:db8::7") }, []string{
			"c:5: service 192.0.2.10:80/tcp: backend [2001:db8::7]:80: address family differs from vip 192.0.2.10; direct routing cannot translate it",
		}},
		{"tunnel backend family", func(c *Config) {
			b := &c.Services[0].Backends[0]
			b.Addr = netip.MustParseAddr("2001:db8::7")
			b.Forward = Forward{Method: Tunnel}
		}, []string{
			"c:5: service 192.0.2.10:80/tcp: backend [2001:db8::7]:80: address family differs from vip 192.0.2.10; xlb tunnels IPv4 in IPv4 and IPv6 in IPv6 only",
		}},
		{"tunnel backend port", func(c *Config) {
			b := &c.Services[0].Backends[0]
			b.Port = 8080
			b.Forward = Forward{Method: Tunnel, Encap: GUE, Port: 6080}
		}, []string{
			"c:5: service 192.0.2.10:80/tcp: backend 198.51.100.7:8080: port 8080 differs from the service port 80; a tunnel cannot rewrite ports",
		}},
		{"gue without port, at lvs_method", func(c *Config) {
			b := &c.Services[0].Backends[0]
			b.Forward = Forward{Method: Tunnel, Encap: GUE}
			b.Keywords.Set("lvs_method", Pos{"c", 6})
		}, []string{
			"c:6: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: gue tunnel needs a port",
		}},
		{"sorry server tunnel settings on DR", func(c *Config) {
			c.Services[0].SorryServer = &SorryServer{Addr: netip.MustParseAddr("198.51.100.9"), Port: 80, Forward: Forward{Port: 6080}, Source: Pos{"c", 3}}
			c.Services[0].Keywords.Set("sorry_server_lvs_method", Pos{"c", 4})
		}, []string{
			"c:4: service 192.0.2.10:80/tcp: sorry server: direct routing takes no tunnel settings",
		}},
		{"tunnel backends valid", func(c *Config) {
			c.Services[0].Backends[0].Forward = Forward{Method: Tunnel, Encap: GUE, Port: 6080, Csum: true}
			c.Services[0].SorryServer = &SorryServer{Addr: netip.MustParseAddr("198.51.100.9"), Port: 80, Forward: Forward{Method: Tunnel}, Source: Pos{"c", 3}}
		}, nil},
		{"http check without url", func(c *Config) { c.Services[0].Backends[0].Checks[0].Kind = CheckHTTP }, []string{
			"c:7: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: http check: needs at least one url",
		}},
		{"bad digest", func(c *Config) {
			ch := &c.Services[0].Backends[0].Checks[0]
			ch.Kind = CheckHTTP
			ch.URLs = []URL{{Path: "/", Digest: "xyz", Source: Pos{"c", 8}}}
		}, []string{
			`c:8: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: http check: url /: digest "xyz" is not 32 hex digits (an MD5 sum)`,
		}},
		{"misc without path", func(c *Config) { c.Services[0].Backends[0].Checks[0].Kind = CheckMisc }, []string{
			"c:7: service 192.0.2.10:80/tcp: backend 198.51.100.7:80: misc check: misc_path is missing",
		}},
		{"vrrp problems", func(c *Config) {
			in := &c.VRRP[0]
			in.VirtualRouterID = 0
			in.Priority = 256
			in.Auth = &VRRPAuth{Type: "PASS", Pass: "123456789"}
			in.TrackScripts = []Track{{Name: "nope", Source: Pos{"c", 22}}}
			c.SyncGroups = []SyncGroup{{Name: "G", Instances: []string{"VI_1", "VI_2"}, Source: Pos{"c", 40}}}
		}, []string{
			"c:20: vrrp_instance VI_1: virtual_router_id 0 is outside 1..255",
			"c:20: vrrp_instance VI_1: priority 256 is outside 1..255",
			"c:20: vrrp_instance VI_1: auth_pass is longer than 8 characters",
			"c:22: vrrp_instance VI_1: track_script nope is not defined",
			"c:40: vrrp_sync_group G: vrrp_instance VI_2 is not defined",
		}},
		{"version", func(c *Config) { c.VRRP[0].Version = 4 }, []string{
			"c:20: vrrp_instance VI_1: version 4 must be 2 or 3",
		}},
		{"VRRPv2 advert_int in whole seconds", func(c *Config) { c.VRRP[0].Version, c.VRRP[0].AdvertInt = 2, 500*time.Millisecond }, []string{
			"c:20: vrrp_instance VI_1: advert_int 500ms: VRRPv2 carries multiples of 1s up to 4m15s",
		}},
		{"VRRPv3 advert_int up to 40.95s", func(c *Config) { c.VRRP[0].Version, c.VRRP[0].AdvertInt = 3, 41*time.Second }, []string{
			"c:20: vrrp_instance VI_1: advert_int 41s: VRRPv3 carries multiples of 10ms up to 40.95s",
		}},
		{"VRRPv3 sub-second advert_int", func(c *Config) { c.VRRP[0].Version, c.VRRP[0].AdvertInt = 3, 250*time.Millisecond }, nil},
		{"v3 authentication", func(c *Config) {
			c.VRRP[0].Version, c.VRRP[0].Auth = 3, &VRRPAuth{Type: "PASS", Pass: "x"}
		}, []string{"c:20: vrrp_instance VI_1: VRRP version 3 has no authentication"}},
		{"no virtual addresses", func(c *Config) { c.VRRP[0].VirtualIPs = nil }, []string{
			"c:20: vrrp_instance VI_1: has no virtual_ipaddress",
		}},
		{"same vrid twice", func(c *Config) {
			in := validInstance()
			in.Name, in.Source.Line = "VI_2", 30
			in.VirtualIPs[0].Prefix = netip.MustParsePrefix("192.0.2.11/24")
			c.VRRP = append(c.VRRP, in)
		}, []string{"c:30: vrrp_instance VI_2: virtual_router_id 51 on eth0 is already used by vrrp_instance VI_1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Services: []Service{validService()}, VRRP: []VRRPInstance{validInstance()}}
			tt.modify(c)
			var got []string
			for _, e := range Errors(c.Validate()) {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}
