package api

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteVRRP prints the VRRP instances of st, one line each: what an
// operator asks first on either balancer (which one is master, at what
// priority, hearing its peer?) and keepalived answers only in its log or
// a data dump. A priority that tracked objects moved shows the configured
// one beside it.
func WriteVRRP(w io.Writer, st State) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ew := &errWriter{w: tw}
	ew.printf("Instance\tInterface\tVRID\tState\tPriority\tSent\tReceived\tDropped\tVIPs\n")
	for _, in := range st.VRRP {
		prio := strconv.Itoa(in.Priority)
		if in.Priority != in.BasePriority {
			prio += fmt.Sprintf(" (%d)", in.BasePriority)
		}
		ew.printf("%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\n", in.Name, in.Interface, in.VRID, in.State, prio,
			in.Sent, in.Received, in.Dropped, strings.Join(in.VIPs, " "))
	}
	if ew.err != nil {
		return ew.err
	}
	return tw.Flush()
}
