package datapath

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Timeouts are how long a flow entry outlives its last packet, by state:
// IPVS's connection timeouts (ipvsadm --set tcp tcpfin udp, and the
// SYN_RECV and CLOSE entries of its TCP state table). The program does not
// follow an entry idle for longer: the flow's next packet is scheduled
// afresh, so a drained backend really drains, and the entry is dead
// weight until the sweep (Sweep) or the table's own eviction removes it.
type Timeouts struct {
	// TCP is ESTABLISHED: a packet without SYN, FIN or RST was seen.
	TCP time.Duration
	// SynRecv is a connection that has sent nothing but SYNs.
	SynRecv time.Duration
	// Fin is FIN_WAIT and TIME_WAIT: a FIN was seen.
	Fin time.Duration
	// Close is a connection that was reset.
	Close time.Duration
	// UDP is any UDP flow.
	UDP time.Duration
}

// DefaultTimeouts are IPVS's defaults.
var DefaultTimeouts = Timeouts{
	TCP:     900 * time.Second,
	SynRecv: 60 * time.Second,
	Fin:     120 * time.Second,
	Close:   10 * time.Second,
	UDP:     300 * time.Second,
}

// maxTimeout bounds every timeout well inside the 32-bit stamp the
// program keeps, whatever the tick rate.
const maxTimeout = 365 * 24 * time.Hour

// For returns the timeout of an entry in state s.
func (t Timeouts) For(s FlowState) time.Duration {
	switch s {
	case FlowSYN:
		return t.SynRecv
	case FlowEst:
		return t.TCP
	case FlowFIN:
		return t.Fin
	case FlowClose:
		return t.Close
	case FlowUDP:
		return t.UDP
	}
	return 0
}

// Max is the longest of the timeouts: no entry is followed longer than
// this after its last packet.
func (t Timeouts) Max() time.Duration {
	return max(t.TCP, t.SynRecv, t.Fin, t.Close, t.UDP)
}

// holdSlack covers what the program's coarse clock adds to a timeout
// (under two atime units: 1.3 s at HZ=100) and the time a transaction
// takes between releasing an id and deleting its backend.
const holdSlack = 5 * time.Second

// Hold is how long a released backend id must stay unused: after it, no
// entry that names the id is followed any more, since every such entry
// has been idle for longer than the longest timeout.
func (t Timeouts) Hold() time.Duration { return t.Max() + holdSlack }

// Validate checks that every timeout is positive and at most a year.
func (t Timeouts) Validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"tcp", t.TCP}, {"syn_recv", t.SynRecv}, {"fin", t.Fin}, {"close", t.Close}, {"udp", t.UDP}} {
		if c.d <= 0 || c.d > maxTimeout {
			errs = append(errs, fmt.Errorf("timeout %s %v: out of range (0, %v]", c.name, c.d, maxTimeout))
		}
	}
	return errors.Join(errs...)
}

// SetTimeouts makes the program expire entries after t. It takes effect
// at once, for entries already in the table too: a shorter timeout
// expires idle entries that the old one kept.
func (d *Datapath) SetTimeouts(t Timeouts) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writeSettings(t, d.promote); err != nil {
		return err
	}
	d.timeouts = t
	return nil
}

// DefaultPromotion is how long a new flow must last before it leaves
// probation for the flow table proper.
const DefaultPromotion = time.Second

// SetPromotion sets how long a new flow must last (a packet at least d
// after its first) before it moves from probation, where a flood of new
// tuples may evict it, to the flow table proper, where nothing does.
func (d *Datapath) SetPromotion(p time.Duration) error {
	if p < 0 || p > maxTimeout {
		return fmt.Errorf("datapath: promotion age %v: out of range [0, %v]", p, maxTimeout)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writeSettings(d.timeouts, p); err != nil {
		return err
	}
	d.promote = p
	return nil
}

// writeSettings gives the program timeouts t and promotion age p.
func (d *Datapath) writeSettings(t Timeouts, p time.Duration) error {
	if err := writeSettings(d.objs.Settings, t, p); err != nil {
		return err
	}
	for _, port := range d.ports {
		if err := writeSettings(port.objs.Settings, t, p); err != nil {
			return fmt.Errorf("datapath: interface %s: %w", port.name, err)
		}
	}
	return nil
}

// writeSettings writes t and p into the program's settings v.
func writeSettings(v *ebpf.Variable, t Timeouts, p time.Duration) error {
	hz, err := tickRate()
	if err != nil {
		return err
	}
	s := t.settings(hz)
	// Truncated stamps: a difference of units(p)+1 is more than p.
	s.Promote = units(p, hz) + 1
	if err := v.Set(s); err != nil {
		return fmt.Errorf("datapath: set timeouts: %w", err)
	}
	return nil
}

// Timeouts returns the timeouts the program applies.
func (d *Datapath) Timeouts() Timeouts {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.timeouts
}

// settings lays t out as struct xlb_settings for a kernel ticking hz times
// a second.
func (t Timeouts) settings(hz float64) lbXlbSettings {
	var s lbXlbSettings
	for st := range FlowState(len(s.Timeout)) {
		s.Timeout[st] = units(t.For(st), hz)
	}
	return s
}

// units is d in the program's atime units, rounded up. The program
// expires an entry once now - atime > units(timeout), where both stamps
// are truncated to a unit: the entry is then idle for more than the
// timeout, and less than the timeout plus two units.
func units(d time.Duration, hz float64) uint32 {
	if d <= 0 {
		return 0
	}
	u := math.Ceil(d.Seconds() * hz / float64(uint64(1)<<atimeShift))
	return uint32(min(u, math.MaxUint32))
}

// unitDuration is one atime unit of a kernel ticking hz times a second.
func unitDuration(hz float64) time.Duration {
	return time.Duration(float64(uint64(1)<<atimeShift) / hz * float64(time.Second))
}

// tickRate is the kernel's HZ, the rate of the jiffies the program stamps
// flows with. The coarse clocks advance once a tick, and the kernel
// reports their resolution as TICK_NSEC, (10^9 + HZ/2) / HZ rounded down:
// the nearest whole rate to its inverse is HZ itself.
func tickRate() (float64, error) {
	var ts unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("datapath: tick rate: %w", err)
	}
	ns := ts.Nano()
	if ns <= 0 || ns > int64(time.Second) {
		return 0, fmt.Errorf("datapath: tick rate: coarse clock resolution %dns", ns)
	}
	return math.Round(float64(time.Second) / float64(ns)), nil
}
