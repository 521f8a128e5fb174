package api

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
)

// ListFormat selects the columns of WriteList, as ipvsadm's options do.
type ListFormat int

// List formats: the default (weights and connections), --stats and --rate.
const (
	ListDefault ListFormat = iota
	ListStats
	ListRate
)

// WriteList prints st in the layout of `ipvsadm -L -n`: the layout users
// read every day, so scripts and eyes that parse it keep working. Forward
// is Route or Tunnel, as ipvsadm prints direct routing and tunnelling
// servers. For ListRate, prev is an
// earlier State of the same daemon (nil prints zero rates).
func WriteList(w io.Writer, st State, format ListFormat, prev *State) error {
	ew := &errWriter{w: w}
	switch format {
	case ListStats:
		ew.printf("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case ListRate:
		ew.printf("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	default:
		ew.printf("Prot LocalAddress:Port Scheduler Flags\n" +
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	for _, s := range st.Services {
		name := fmt.Sprintf("%s  %s", s.Proto, hostPort(s.Addr, s.Port))
		switch format {
		case ListStats:
			ew.printf("%-33s%s\n", name, largenums(s.Stats))
		case ListRate:
			ew.printf("%-33s%s\n", name, largenums(rate(s.Stats, prevService(prev, s), st.Taken, prev)))
		default:
			ew.printf("%s %s", name, s.Scheduler)
			if s.Persistence > 0 {
				ew.printf(" persistent %d", s.Persistence)
			}
			if s.VLAN != 0 {
				ew.printf(" vlan %d", s.VLAN)
			}
			ew.printf("\n")
		}
		for _, b := range s.Backends {
			dest := hostPort(b.Addr, b.Port)
			switch format {
			case ListStats:
				ew.printf("  -> %-28s%s\n", dest, largenums(b.Stats))
			case ListRate:
				ew.printf("  -> %-28s%s\n", dest, largenums(rate(b.Stats, prevBackend(prev, s, b), st.Taken, prev)))
			default:
				fwd := b.Forward
				if fwd == "" {
					fwd = "Route"
				}
				ew.printf("  -> %-28s %-7s %-6d %-10d %-10d", dest, fwd, b.Weight, b.ActiveConn, b.InActConn)
				if b.Override != "" {
					// Only an override adds a column, so that parsers of
					// ipvsadm's layout keep working otherwise.
					ew.printf(" override: %s", b.Override)
				}
				ew.printf("\n")
			}
		}
	}
	return ew.err
}

func hostPort(addr string, port uint16) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr + ":" + strconv.Itoa(int(port))
	}
	return netip.AddrPortFrom(a, port).String()
}

// largenums formats five counters as ipvsadm does: exact below 10^8, then
// scaled with a K, M, G or T suffix so columns keep their width.
func largenums(s Stats) string {
	var out string
	for _, v := range []uint64{s.Conns, s.InPkts, s.OutPkts, s.InBytes, s.OutBytes} {
		out += " " + largenum(v)
	}
	return out
}

func largenum(v uint64) string {
	switch {
	case v < 100_000_000:
		return fmt.Sprintf("%8d", v)
	case v < 1_000_000_000:
		return fmt.Sprintf("%7dK", v/1_000)
	case v < 100_000_000_000:
		return fmt.Sprintf("%7dM", v/1_000_000)
	case v < 100_000_000_000_000:
		return fmt.Sprintf("%7dG", v/1_000_000_000)
	}
	return fmt.Sprintf("%7dT", v/1_000_000_000_000)
}

func prevService(prev *State, s Service) *Stats {
	if prev == nil {
		return nil
	}
	for _, p := range prev.Services {
		if p.Proto == s.Proto && p.Addr == s.Addr && p.Port == s.Port {
			return &p.Stats
		}
	}
	return nil
}

func prevBackend(prev *State, s Service, b Backend) *Stats {
	if prev == nil {
		return nil
	}
	for _, p := range prev.Services {
		if p.Proto != s.Proto || p.Addr != s.Addr || p.Port != s.Port {
			continue
		}
		for _, pb := range p.Backends {
			if pb.Addr == b.Addr && pb.Port == b.Port {
				return &pb.Stats
			}
		}
	}
	return nil
}

// rate turns two readings into per-second rates (CPS, PPS, BPS).
func rate(cur Stats, old *Stats, now time.Time, prev *State) Stats {
	if old == nil || prev == nil {
		return Stats{}
	}
	dt := now.Sub(prev.Taken).Seconds()
	if dt <= 0 {
		return Stats{}
	}
	per := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return uint64(float64(a-b)/dt + 0.5)
	}
	return Stats{
		Conns:    per(cur.Conns, old.Conns),
		InPkts:   per(cur.InPkts, old.InPkts),
		OutPkts:  per(cur.OutPkts, old.OutPkts),
		InBytes:  per(cur.InBytes, old.InBytes),
		OutBytes: per(cur.OutBytes, old.OutBytes),
	}
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}
