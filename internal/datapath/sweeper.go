package datapath

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The sweep walks the flow table in the background: it deletes the
// entries past their timeouts (the flow table proper never evicts, so this
// is how it makes room) and counts the connections of every backend, which
// `xlb list` and the metrics then read without a walk of their own.
const (
	// sweepPause is the rest between two batches of a pass, so that a
	// pass over millions of entries never holds a CPU for long.
	sweepPause = time.Millisecond
	// sweepInterval is the least time from one pass to the next; a pass
	// that took long waits sweepRest times its length, so sweeping takes
	// at most about a fifth of a CPU.
	sweepInterval = time.Second
	sweepRest     = 4
)

// Sweeper runs Sweep in the background and keeps its last counts.
type Sweeper struct {
	dp  *Datapath
	log *slog.Logger

	mu   sync.Mutex
	last map[uint32]Conns
	live int

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// StartSweeper sweeps once, so the first listing has counts, then keeps
// sweeping until Stop.
func (d *Datapath) StartSweeper(ctx context.Context, log *slog.Logger) *Sweeper {
	ctx, cancel := context.WithCancel(ctx)
	s := &Sweeper{dp: d, log: log, cancel: cancel, done: make(chan struct{})}
	wait := s.pass()
	go func() {
		defer close(s.done)
		t := time.NewTimer(wait)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			t.Reset(s.pass())
		}
	}()
	return s
}

// pass sweeps once and returns how long to wait for the next.
func (s *Sweeper) pass() time.Duration {
	res, err := s.dp.Sweep(sweepPause)
	if err != nil {
		s.log.Error("flow table sweep", "err", err)
		return sweepInterval
	}
	s.mu.Lock()
	s.last, s.live = res.Backends, res.Live
	s.mu.Unlock()
	if res.Expired > 0 {
		s.log.Debug("flow table sweep", "live", res.Live, "probation", res.Probation, "expired", res.Expired, "took", res.Took)
	}
	return max(sweepInterval, sweepRest*res.Took)
}

// Counts returns the connections per backend id of the last pass, and
// how many entries the flow table held then.
func (s *Sweeper) Counts() (map[uint32]Conns, int) {
	if s == nil {
		return nil, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.live
}

// Stop ends the sweeping and waits for a pass under way.
func (s *Sweeper) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		<-s.done
	})
}
