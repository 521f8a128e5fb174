package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestBGPGolden: a bgp section, and a YAML file extending a
// keepalived.conf with one, read into the model and written back as YAML
// (a golden file), with every default filled in.
func TestBGPGolden(t *testing.T) {
	for _, name := range []string{"full.yaml", "extends.yaml"} {
		t.Run(name, func(t *testing.T) {
			cfg, _, err := Load(filepath.Join("testdata", "bgp", name), FormatAuto)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.BGP == nil {
				t.Fatal("no bgp section")
			}
			out, err := MarshalYAML(cfg)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join("testdata", "bgp", strings.TrimSuffix(name, ".yaml")+".golden"), out)
		})
	}
}

func TestBGPErrors(t *testing.T) {
	const svc = "services:\n  - vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    backends:\n      - address: 198.51.100.11\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"no as, no peers, bad router id", svc + "bgp:\n  router_id: 2001:db8::1\n  peers: []\n", []string{
			"c.yaml:8: bgp: local_as is missing",
			`c.yaml:8: bgp: router_id must be an IPv4 address (got "2001:db8::1")`,
			"c.yaml:8: bgp: has no peers",
		}},
		{"timers", svc + "bgp:\n  local_as: 65001\n  router_id: 198.51.100.2\n  hold_time: 2s\n  keepalive_time: 5s\n  peers:\n    - address: 198.51.100.1\n      as: 65000\n", []string{
			"c.yaml:8: bgp: hold_time 2s must be 0 or at least 3s (RFC 4271)",
			"c.yaml:8: bgp: keepalive_time 5s must be positive and below hold_time 2s",
		}},
		{"peers", svc + "bgp:\n  local_as: 65001\n  router_id: 198.51.100.2\n  peers:\n    - address: 198.51.100.1\n      as: 65000\n    - address: 198.51.100.1\n    - address: 2001:db8::1\n      as: 65000\n      local_address: 198.51.100.2\n      families: [ipv4, vpnv4]\n", []string{
			"c.yaml:13: bgp: peer 198.51.100.1: duplicate of the peer at c.yaml:11",
			"c.yaml:13: bgp: peer 198.51.100.1: as is missing",
			"c.yaml:14: bgp: peer 2001:db8::1: local_address 198.51.100.2 is of another family",
			`c.yaml:14: bgp: peer 2001:db8::1: unknown family "vpnv4" (want ipv4 or ipv6)`,
		}},
		{"vips", svc + "bgp:\n  local_as: 65001\n  router_id: 198.51.100.2\n  peers:\n    - address: 2001:db8::1\n      as: 65000\n  vips:\n    - vip: 192.0.2.99\n      communities: [\"65001:x\"]\n", []string{
			`c.yaml:15: community "65001:x" is not AS:VALUE with both below 65536`,
		}},
		{"vip of no service, family without a peer", svc + "bgp:\n  local_as: 65001\n  router_id: 198.51.100.2\n  peers:\n    - address: 2001:db8::1\n      as: 65000\n  vips:\n    - vip: 192.0.2.99\n", []string{
			"c.yaml:8: bgp: vip 192.0.2.10: no peer carries its family",
			"c.yaml:14: bgp: vip 192.0.2.99 is the VIP of no service",
		}},
		{"unknown field", svc + "bgp:\n  local_as: 65001\n  routerid: 198.51.100.2\n", []string{
			"c.yaml:9: unknown field routerid in bgp",
		}},
		{"extends with services", "extends: k.conf\n" + svc, []string{
			"c.yaml:1: extends: a file that extends a keepalived.conf holds only its bgp section; the rest stays in k.conf",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantYAMLErrors(t, tt.doc, tt.want) })
	}
}
