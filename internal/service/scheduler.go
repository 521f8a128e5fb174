package service

import "fmt"

// SchedulerPlan says how xlb serves a scheduler. xlb's data path has one
// algorithm, weighted Maglev consistent hashing, keyed either on the whole
// 5-tuple or on the source address only. The note is empty when the
// mapping is exact and otherwise says in one line what changes.
func SchedulerPlan(s string) (hashSourceOnly bool, note string, err error) {
	switch s {
	case "maglev":
		return false, "", nil
	case "mh":
		// IPVS's mh is Maglev on the source address unless mh-port is set.
		return true, "", nil
	case "sh":
		// Same client, same backend: what sh promises, with consistent
		// hashing so that a backend change moves only its own clients.
		return true, "", nil
	case "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sed", "nq", "fo", "ovf", "twos":
		return false, fmt.Sprintf("%s is served by weighted Maglev: new connections are spread by hash in proportion to weight, not by %s", s, schedulerRule[s]), nil
	}
	return false, "", fmt.Errorf("unknown scheduler %q (want maglev, mh, sh, rr, wrr, lc, wlc, lblc, lblcr, dh, sed, nq, fo, ovf or twos)", s)
}

var schedulerRule = map[string]string{
	"rr":    "turn",
	"wrr":   "weighted turn",
	"lc":    "least connections",
	"wlc":   "weighted least connections",
	"lblc":  "locality-based least connections",
	"lblcr": "locality-based least connections with replication",
	"dh":    "destination hash",
	"sed":   "shortest expected delay",
	"nq":    "never queue",
	"fo":    "weighted failover",
	"ovf":   "weighted overflow",
	"twos":  "weighted random twos choice",
}
