package datapath

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// vlanSetup is stdSetup with vip4:80/tcp limited to VLAN 100 and
// vip6:53/udp to VLAN 7; the other services take any frame.
func vlanSetup() Txn {
	t := stdSetup()
	for i := range t.Services {
		switch t.Services[i].Service.ID {
		case svcTCP4:
			t.Services[i].Service.VLAN = 100
		case svcUDP6:
			t.Services[i].Service.VLAN = 7
		}
	}
	return t
}

func onVLAN(tpid, tci uint16) func(*pkt) {
	return func(p *pkt) { p.tags = []vlanTag{{tpid: tpid, tci: tci}} }
}

func passVLAN() map[Counter]uint64 { return map[Counter]uint64{CounterPassVLAN: 1} }

// TestVLANLimit: a service limited to a VLAN forwards that VLAN's frames,
// tag kept byte for byte, and passes its VIP's frames that arrive untagged
// or on another VLAN, new flow or known, without touching the flow.
func TestVLANLimit(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, vlanSetup())
	tests := []struct {
		name  string
		steps []step
	}{{
		name: "its vlan is forwarded with the tag",
		steps: []step{
			{p: tcp4(41000, thSYN).with(onVLAN(tpid8021Q, 100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
			{p: tcp4(41000, thACK).with(onVLAN(tpid8021Q, 100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst},
		},
	}, {
		name: "priority bits are not part of the id",
		steps: []step{
			{p: tcp4(41001, thSYN).with(onVLAN(tpid8021Q, 0xe000|100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
		},
	}, {
		name: "802.1ad tag with its id",
		steps: []step{
			{p: tcp4(41002, thSYN).with(onVLAN(tpidQinQ, 100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
		},
	}, {
		name: "untagged new flow is passed",
		steps: []step{
			{p: tcp4(41003, thSYN), verdict: verdictPass, counters: passVLAN()},
		},
	}, {
		name: "priority-tagged (id 0) new flow is passed",
		steps: []step{
			{p: tcp4(41004, thSYN).with(onVLAN(tpid8021Q, 0x2000)), verdict: verdictPass, counters: passVLAN()},
		},
	}, {
		name: "another vlan is passed",
		steps: []step{
			{p: tcp4(41005, thSYN).with(onVLAN(tpid8021Q, 101)), verdict: verdictPass, counters: passVLAN()},
		},
	}, {
		name: "a known flow's frame on another vlan is passed and leaves the flow as it was",
		steps: []step{
			{p: tcp4(41006, thSYN).with(onVLAN(tpid8021Q, 100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()},
			{p: tcp4(41006, thACK), verdict: verdictPass, backend: 1, flowSvc: svcTCP4, state: FlowSYN, counters: passVLAN()},
			{p: tcp4(41006, thFIN).with(onVLAN(tpid8021Q, 200)), verdict: verdictPass, backend: 1, flowSvc: svcTCP4, state: FlowSYN, counters: passVLAN()},
			{p: tcp4(41006, thACK).with(onVLAN(tpid8021Q, 100)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowEst},
		},
	}, {
		name: "ipv6 service on its vlan",
		steps: []step{
			{p: udp6(41007).with(onVLAN(tpid8021Q, 7)), verdict: verdictTX, backend: 4, svc: svcUDP6, state: FlowUDP, counters: newFlow()},
			{p: udp6(41008), verdict: verdictPass, counters: passVLAN()},
		},
	}, {
		name: "a service without a limit takes every vlan",
		steps: []step{
			{p: udp4(41009), verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
			{p: udp4(41010).with(onVLAN(tpid8021Q, 100)), verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
			{p: udp4(41011).with(onVLAN(tpid8021Q, 4094)), verdict: verdictTX, backend: 2, svc: svcUDP4, state: FlowUDP, counters: newFlow()},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearFlows(t, d)
			for i, s := range tc.steps {
				t.Logf("step %d", i)
				s.check(t, d, stdServices, stdBackends)
			}
		})
	}
}

// TestVLANChange: a transaction that lifts or moves a service's limit
// takes effect on the next frame, and Services reads it back.
func TestVLANChange(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, vlanSetup())
	untagged := tcp4(42000, thSYN)
	(step{p: untagged, verdict: verdictPass, counters: passVLAN()}).check(t, d, stdServices, stdBackends)

	lift := stdSetup()
	lift.Services = lift.Services[:1] // vip4:80/tcp, no limit
	apply(t, d, Txn{Services: lift.Services})
	(step{p: untagged, verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()}).check(t, d, stdServices, stdBackends)

	move := vlanSetup()
	move.Services = move.Services[:1]
	move.Services[0].Service.VLAN = 300
	apply(t, d, Txn{Services: move.Services})
	clearFlows(t, d)
	(step{p: untagged.with(onVLAN(tpid8021Q, 100)), verdict: verdictPass, counters: passVLAN()}).check(t, d, stdServices, stdBackends)
	(step{p: untagged.with(onVLAN(tpid8021Q, 300)), verdict: verdictTX, backend: 1, svc: svcTCP4, state: FlowSYN, counters: newFlow()}).check(t, d, stdServices, stdBackends)

	got := map[uint32]uint16{}
	for _, s := range sortedServices(t, d) {
		got[s.Service.ID] = s.Service.VLAN
	}
	want := map[uint32]uint16{svcTCP4: 300, svcUDP4: 0, svcTCP6: 0, svcUDP6: 7, svcAllPorts: 0, svcPort8080: 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vlans read back (-want +got):\n%s", diff)
	}
}

// TestVLANRejected: an id 802.1Q does not allow is refused and changes
// nothing.
func TestVLANRejected(t *testing.T) {
	d := newDatapath(t, Options{})
	apply(t, d, vlanSetup())
	before := sortedServices(t, d)
	bad := vlanSetup()
	bad.Backends = nil
	bad.Services[0].Service.VLAN = 4095
	err := d.Apply(Txn{Services: bad.Services})
	if err == nil || !strings.Contains(err.Error(), "vlan 4095 out of range") {
		t.Fatalf("apply vlan 4095: got %v, want an out-of-range error", err)
	}
	if diff := cmp.Diff(before, sortedServices(t, d), equateAddr); diff != "" {
		t.Errorf("services changed by a rejected transaction (-before +after):\n%s", diff)
	}
}
