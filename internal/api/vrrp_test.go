package api

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/xlb-project/xlb/internal/testutil"
)

func TestWriteVRRP(t *testing.T) {
	st := State{VRRP: []VRRPInstance{
		{Name: "VI_1", Interface: "eth0", VRID: 51, State: "MASTER", Priority: 150, BasePriority: 150,
			VIPs: []string{"192.0.2.10/32", "192.0.2.11/32"}, Sent: 12345},
		{Name: "VI_WEB6", Interface: "eth1", VRID: 52, State: "BACKUP", Priority: 80, BasePriority: 100,
			VIPs: []string{"2001:db8:200::10/128"}, Received: 98765, Dropped: 3},
		{Name: "VI_3", Interface: "eth0", VRID: 53, State: "FAULT", Priority: 100, BasePriority: 100,
			VIPs: []string{"192.0.2.30/32"}},
	}}
	var b bytes.Buffer
	if err := WriteVRRP(&b, st); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "vrrp.golden")
	testutil.Golden(t, path, b.Bytes())
}
