package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlb-project/xlb/internal/testutil"
)

// TestLinkFault pulls the master's cable with its daemon alive. As in
// keepalived, an instance tracks its own interface unless
// dont_track_primary says otherwise: lb1 goes to FAULT, gives up the VIP
// and runs notify_fault, lb2 takes over; with the cable back lb1 returns
// to BACKUP and preempts.
func TestLinkFault(t *testing.T) {
	topo := newFailoverTopology(t)
	startRealServers(t, topo)
	v := failoverTimes
	v.preemptDelay = 0
	mdi := v.masterDown(lb2Priority)
	vips := watchVIP(t, topo)

	dir := t.TempDir()
	mark := filepath.Join(dir, "fault")
	script := filepath.Join(dir, "fault.sh")
	writeFile(t, script, fmt.Sprintf("#!/bin/sh\ntouch %s\n", mark))
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	tracked := func(prio int, extra string) string {
		c := strings.Replace(vrrpInstanceConf(v, prio), "    dont_track_primary\n", extra, 1)
		return c + failoverServices()
	}
	lb1, lb2 := startPair(t, topo, vips, watchLink(t, topo), mdi, tracked(lb1Priority, "    notify_fault "+script+"\n"), tracked(lb2Priority, ""))
	if got := lb2.vrrpStates(); !slices.Equal(got, []string{"BACKUP"}) {
		t.Fatalf("lb2 went through states %v before the fault, want BACKUP", got)
	}

	setCable(t, topo, testutil.LB1, false)
	vips.waitHolders(t, 5*time.Second+2*mdi, testutil.LB2)
	if got := lb1.vrrpStates(); !slices.Equal(got, []string{"BACKUP", "MASTER", "FAULT"}) {
		t.Errorf("lb1 went through states %v with its cable pulled, want BACKUP, MASTER, FAULT", got)
	}
	waitFor(t, 5*time.Second, "lb1's notify_fault script to run", func() (bool, string) {
		_, err := os.Stat(mark)
		return err == nil, fmt.Sprint(err)
	})

	setCable(t, topo, testutil.LB1, true)
	vips.waitHolders(t, 5*time.Second+2*mdi, testutil.LB1)
	if got := lb1.vrrpStates(); !slices.Equal(got, []string{"BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER"}) {
		t.Errorf("lb1 went through states %v after its cable came back, want BACKUP, MASTER, FAULT, BACKUP, MASTER", got)
	}
	if n := vips.absences(); n > 0 {
		// Between lb1's release and lb2's takeover nobody holds it: the
		// protocol's skew time, not a fault of the test.
		t.Logf("the VIP was on neither LB at %d polls", n)
	}
}
