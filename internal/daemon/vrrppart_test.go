package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xlb-project/xlb/internal/config"
	"github.com/xlb-project/xlb/internal/service"
)

// TestVRRPPart: a reload rebuilds VRRP when a setting changed, and not
// when the blocks only moved in the file.
func TestVRRPPart(t *testing.T) {
	const base = `vrrp_script chk {
    script "/bin/true"
}
vrrp_sync_group G {
    group {
        VI_1
    }
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.10/32
    }
    track_script {
        chk
    }
    track_interface {
        eth0
    }
}
`
	tests := []struct {
		name    string
		text    string
		changed bool
	}{
		{"moved down by a comment", "! a comment\n\n" + base, false},
		{"priority", strings.Replace(base, "priority 100", "priority 101", 1), true},
		{"address", strings.Replace(base, "192.0.2.10/32", "192.0.2.11/32", 1), true},
		{"script", strings.Replace(base, "/bin/true", "/bin/false", 1), true},
	}
	// One file for all: its name is part of the positions.
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	loadAt := func(t *testing.T, text string) *service.Config {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Load(path, config.FormatKeepalived)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	old := loadAt(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadAt(t, tt.text)
			if !tt.changed && reflect.DeepEqual(old.VRRP, cfg.VRRP) {
				t.Fatal("the blocks did not move; the case tests nothing")
			}
			if got := !reflect.DeepEqual(vrrpPart(old), vrrpPart(cfg)); got != tt.changed {
				t.Errorf("changed %v, want %v", got, tt.changed)
			}
		})
	}
}
