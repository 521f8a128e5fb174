// Package notify runs keepalived's notify scripts for real servers and
// services: notify_up and notify_down when a checker changes a real
// server's state, quorum_up and quorum_down when a service's quorum
// changes, and, for services with omega, the down scripts at shutdown.
// Scripts run in the background, as their user, bounded by script.NotifyTimeout; the
// configuration passed script security at load (internal/scriptsec).
package notify

import (
	"log/slog"
	"net/netip"

	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
)

// Runner starts the scripts.
type Runner struct {
	Log *slog.Logger
}

// Backend starts b's notify_up or notify_down script, as keepalived does
// when a checker changes its state, without waiting for it.
func (r Runner) Backend(s service.Service, b service.Backend, up bool) {
	kw, line := "notify_down", b.NotifyDown
	if up {
		kw, line = "notify_up", b.NotifyUp
	}
	r.start(line, b.NotifyUser, r.Log.With("service", s.Key(), "backend", b.AddrPort(), "script", kw), "notify script failed")
}

// Health logs a backend's new state (ev), loudly when s, its service, has
// no backend left up (anyUp false): what happens to new connections then.
// It runs no script: Backend does, once the change is served.
func (r Runner) Health(ev healthcheck.Event, s service.Service, anyUp bool) {
	state := "down"
	if ev.Up {
		state = "up"
	}
	r.Log.Info("backend "+state, "service", ev.Service, "backend", ev.Backend, "reason", ev.Reason)
	switch {
	case ev.Up || anyUp || s.Key() != ev.Service:
	case s.SorryServer != nil:
		r.Log.Warn("every backend is down: new connections go to the sorry server", "service", ev.Service, "sorry_server", s.SorryServer.Addr)
	default:
		r.Log.Error("every backend is down and there is no sorry_server: keeping the last table so the VIP still answers", "service", ev.Service)
	}
}

// Quorum logs a service's lost or regained quorum and starts its
// quorum_down or quorum_up script.
func (r Runner) Quorum(s service.Service, held bool) {
	kw, line := "quorum_down", s.QuorumDown
	if held {
		kw, line = "quorum_up", s.QuorumUp
		r.Log.Info("quorum gained", "service", s.Key())
	} else {
		r.Log.Warn("quorum lost", "service", s.Key(), "quorum", max(s.Quorum, 1), "sorry_server", s.SorryServer != nil)
	}
	r.start(line, s.QuorumUser, r.Log.With("service", s.Key(), "script", kw), "quorum script failed")
}

// Omega starts, for each service with omega, the notify_down scripts of
// its backends still up and its quorum_down if it holds the quorum, as
// keepalived does at shutdown. It returns at once; wait returns when every
// script it started has ended (each bounded by script.NotifyTimeout), so a caller
// can start them under its lock and wait without it.
func (r Runner) Omega(services []service.Service, up func(service.ServiceKey, netip.AddrPort) bool, holds func(service.ServiceKey) bool) (wait func()) {
	var ended []<-chan struct{}
	for _, s := range services {
		if !s.Omega {
			continue
		}
		for _, b := range s.Backends {
			if up(s.Key(), b.AddrPort()) {
				log := r.Log.With("service", s.Key(), "backend", b.AddrPort(), "script", "notify_down")
				ended = append(ended, r.start(b.NotifyDown, b.NotifyUser, log, "omega script failed"))
			}
		}
		if holds(s.Key()) {
			log := r.Log.With("service", s.Key(), "script", "quorum_down")
			ended = append(ended, r.start(s.QuorumDown, s.QuorumUser, log, "omega script failed"))
		}
	}
	return func() {
		for _, done := range ended {
			<-done
		}
	}
}

// start starts a script line as user in the background (script.Start) and
// returns the channel closed when it has ended; an empty line, or one that
// does not split (script security refused those at load), starts nothing.
func (r Runner) start(line, user string, log *slog.Logger, msg string) <-chan struct{} {
	argv, err := script.Split(line)
	if err != nil || len(argv) == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return script.Start(script.Command{Args: argv, User: user}, script.NotifyTimeout, log, msg)
}
