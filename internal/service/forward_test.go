package service

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestForwardString(t *testing.T) {
	tests := []struct {
		f    Forward
		want string
	}{
		{Forward{}, "DR"},
		{Forward{Method: Tunnel}, "TUN ipip"},
		{Forward{Method: Tunnel, Encap: GUE, Port: 6080}, "TUN gue port 6080"},
		{Forward{Method: Tunnel, Encap: GUE, Port: 6080, Csum: true}, "TUN gue port 6080 csum"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestForwardValidate(t *testing.T) {
	tests := []struct {
		f    Forward
		want string
	}{
		{Forward{}, ""},
		{Forward{Method: Tunnel}, ""},
		{Forward{Method: Tunnel, Encap: GUE, Port: 1}, ""},
		{Forward{Method: Tunnel, Encap: GUE, Port: 65535, Csum: true}, ""},
		{Forward{Method: 2}, "unknown forwarding method 2"},
		{Forward{Encap: GUE}, "direct routing takes no tunnel settings"},
		{Forward{Csum: true}, "direct routing takes no tunnel settings"},
		{Forward{Method: Tunnel, Encap: GUE}, "gue tunnel needs a port"},
		{Forward{Method: Tunnel, Port: 6080}, "ipip tunnel takes no port or checksum"},
		{Forward{Method: Tunnel, Csum: true}, "ipip tunnel takes no port or checksum"},
		{Forward{Method: Tunnel, Encap: 7}, "unknown tunnel type 7"},
	}
	for _, tt := range tests {
		got := ""
		if err := tt.f.Validate(); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%#v.Validate() = %q, want %q", tt.f, got, tt.want)
		}
	}
}

// TestForwardOverhead: the outer headers as the kernel's ipip, ip6tnl and
// fou (type gue) devices expect them.
func TestForwardOverhead(t *testing.T) {
	tests := []struct {
		f          Forward
		ipv4, ipv6 int
	}{
		{Forward{}, 0, 0},
		{Forward{Method: Tunnel}, 20, 40},
		{Forward{Method: Tunnel, Encap: GUE, Port: 6080}, 32, 52},
		{Forward{Method: Tunnel, Encap: GUE, Port: 6080, Csum: true}, 32, 52},
	}
	for _, tt := range tests {
		if got := tt.f.Overhead(false); got != tt.ipv4 {
			t.Errorf("%v: IPv4 overhead %d, want %d", tt.f, got, tt.ipv4)
		}
		if got := tt.f.Overhead(true); got != tt.ipv6 {
			t.Errorf("%v: IPv6 overhead %d, want %d", tt.f, got, tt.ipv6)
		}
	}
}

func TestForwardJSON(t *testing.T) {
	for _, f := range []Forward{{}, {Method: Tunnel}, {Method: Tunnel, Encap: GUE, Port: 6080, Csum: true}} {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatalf("marshal %v: %v", f, err)
		}
		var got Forward
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if diff := cmp.Diff(f, got); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", b, diff)
		}
	}
	if b, err := json.Marshal(Forward{Method: Tunnel, Encap: GUE, Port: 6080}); err != nil || string(b) != `{"Method":"Tunnel","Encap":"gue","Port":6080,"Csum":false}` {
		t.Errorf("marshal = %s, %v", b, err)
	}
	if _, err := json.Marshal(Forward{Method: 9}); err == nil {
		t.Errorf("marshalled an unknown method")
	}
	var f Forward
	if err := json.Unmarshal([]byte(`{"Method":"Masq"}`), &f); err == nil {
		t.Errorf("unmarshalled method Masq")
	}
	if err := json.Unmarshal([]byte(`{"Encap":"gre"}`), &f); err == nil {
		t.Errorf("unmarshalled encap gre")
	}
}
