package datapath

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAllStats: the batch read gives every service's and backend's
// counters as the one-id readers do, after traffic through the program.
func TestAllStats(t *testing.T) {
	d := newStdDatapath(t)
	for i := range 5 {
		run(t, d, tcp4(uint16(40000+i), thSYN).build())
		run(t, d, udp4(uint16(40000+i)).build())
	}
	svc, be, err := d.AllStats(svcPort8080, 6)
	if err != nil {
		t.Fatal(err)
	}
	if len(svc) != svcPort8080+1 || len(be) != 7 {
		t.Fatalf("%d service and %d backend entries, want %d and 7", len(svc), len(be), svcPort8080+1)
	}
	for _, id := range stdServices {
		if diff := cmp.Diff(serviceStats(t, d, id), svc[id]); diff != "" {
			t.Errorf("service %d (-one +batch):\n%s", id, diff)
		}
	}
	for _, id := range stdBackends {
		if diff := cmp.Diff(backendStats(t, d, id), be[id]); diff != "" {
			t.Errorf("backend %d (-one +batch):\n%s", id, diff)
		}
	}
	if svc[svcTCP4].Packets != 5 || svc[svcUDP4].Packets != 5 {
		t.Errorf("services tcp4, udp4 counted %d and %d packets, want 5 each", svc[svcTCP4].Packets, svc[svcUDP4].Packets)
	}
	if _, _, err := d.AllStats(MaxServices, 0); err == nil {
		t.Error("a service id out of range was read")
	}
}
