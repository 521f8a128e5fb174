// Package scriptsec applies keepalived's script security (script.Check) to
// the scripts of a configuration that the health checks and the
// reconciler's events run, each refusal at the line that names the script.
// A configuration that fails it is refused at load: serving it would take
// backends down at their first probe, or skip their scripts, for a reason
// only the log would tell.
package scriptsec

import (
	"errors"
	"fmt"

	"github.com/xlb-project/xlb/internal/healthcheck"
	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
)

// Check checks every MISC_CHECK, notify_up, notify_down, quorum_up and
// quorum_down script of cfg and returns every refusal, joined.
func Check(cfg *service.Config) error {
	var errs []error
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			for _, c := range b.Checks {
				if err := healthcheck.CheckScriptSecurity(c); err != nil {
					errs = append(errs, &service.Error{Pos: c.Source, Err: err,
						Msg: fmt.Sprintf("service %s: backend %s: %v", s.Key(), b.AddrPort(), err)})
				}
			}
			for _, n := range []struct{ kw, line string }{{"notify_up", b.NotifyUp}, {"notify_down", b.NotifyDown}} {
				if err := checkLine(n.line, b.Source); err != nil {
					errs = append(errs, &service.Error{Pos: b.Source, Err: err,
						Msg: fmt.Sprintf("service %s: backend %s: %s %q: %v", s.Key(), b.AddrPort(), n.kw, n.line, err)})
				}
			}
		}
		for _, n := range []struct{ kw, line string }{{"quorum_up", s.QuorumUp}, {"quorum_down", s.QuorumDown}} {
			if err := checkLine(n.line, s.Source); err != nil {
				errs = append(errs, &service.Error{Pos: s.Source, Err: err,
					Msg: fmt.Sprintf("service %s: %s %q: %v", s.Key(), n.kw, n.line, err)})
			}
		}
	}
	return errors.Join(errs...)
}

func checkLine(line string, at service.Pos) error {
	if line == "" {
		return nil
	}
	return script.Check(line, at.File)
}
