package script

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// OutputLogged bounds how much of a failing script's output Start logs.
const OutputLogged = 4 << 10

// NotifyTimeout bounds a notify script (a vrrp_instance's or sync group's
// notify_*, a real server's notify_up and notify_down, a service's
// quorum_up and quorum_down): nobody waits for its outcome, but one that
// hangs must not pile up processes at every state change.
const NotifyTimeout = 30 * time.Second

// Start runs c in the background, bounded by timeout, and logs a failure
// with the first OutputLogged bytes of its output: notify scripts, whose
// outcome nobody waits for (keepalived never waits for them either). msg
// is the log message of a failure. The channel is closed once the script
// has ended, for a caller about to exit.
func Start(c Command, timeout time.Duration, log *slog.Logger, msg string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out := &headBuffer{max: OutputLogged}
		c.Output = out
		st, err := c.Run(ctx)
		if err == nil {
			err = st.Err()
		}
		if err != nil {
			log.Warn(msg, "argv", c.Args, "err", err, "output", strings.TrimSpace(string(out.b)))
		}
	}()
	return done
}

// headBuffer keeps the first max bytes written to it: enough of a script's
// output to log, without trusting the script to be brief.
type headBuffer struct {
	b   []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
