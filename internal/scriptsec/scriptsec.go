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

// Check checks every script of cfg that xlb would run, and returns every
// refusal, joined: MISC_CHECK, notify_up, notify_down, quorum_up,
// quorum_down, the notify scripts of vrrp_instance and vrrp_sync_group
// blocks, and the vrrp_scripts an instance tracks.
func Check(cfg *service.Config) error {
	errs := checkVRRP(cfg)
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			for _, c := range b.Checks {
				if err := healthcheck.CheckScriptSecurity(c); err != nil {
					errs = append(errs, &service.Error{Pos: c.Keywords.At(c.Source, "misc_path"), Err: err,
						Msg: fmt.Sprintf("service %s: backend %s: %v", s.Key(), b.AddrPort(), err)})
				}
			}
			for _, n := range []struct{ kw, line string }{{"notify_up", b.NotifyUp}, {"notify_down", b.NotifyDown}} {
				at := b.Keywords.At(b.Source, n.kw)
				if err := checkLine(n.line, at); err != nil {
					errs = append(errs, &service.Error{Pos: at, Err: err,
						Msg: fmt.Sprintf("service %s: backend %s: %s %q: %v", s.Key(), b.AddrPort(), n.kw, n.line, err)})
				}
			}
		}
		for _, n := range []struct{ kw, line string }{{"quorum_up", s.QuorumUp}, {"quorum_down", s.QuorumDown}} {
			at := s.Keywords.At(s.Source, n.kw)
			if err := checkLine(n.line, at); err != nil {
				errs = append(errs, &service.Error{Pos: at, Err: err,
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

// checkVRRP checks the VRRP side's scripts, each at the line of its
// keyword.
func checkVRRP(cfg *service.Config) []error {
	var errs []error
	notify := func(what string, n service.Notify, at func(kw string) service.Pos) {
		for _, s := range []struct{ kw, line string }{
			{"notify", n.Any}, {"notify_master", n.Master}, {"notify_backup", n.Backup},
			{"notify_fault", n.Fault}, {"notify_stop", n.Stop},
		} {
			pos := at(s.kw)
			if err := checkLine(s.line, pos); err != nil {
				errs = append(errs, &service.Error{Pos: pos, Err: err, Msg: fmt.Sprintf("%s: %s %q: %v", what, s.kw, s.line, err)})
			}
		}
	}
	tracked := map[string]bool{}
	for _, in := range cfg.VRRP {
		notify("vrrp_instance "+in.Name, in.Notify, func(kw string) service.Pos { return in.Keywords.At(in.Source, kw) })
		for _, t := range in.TrackScripts {
			tracked[t.Name] = true
		}
	}
	for _, g := range cfg.SyncGroups {
		notify("vrrp_sync_group "+g.Name, g.Notify, func(string) service.Pos { return g.Source })
	}
	for _, sc := range cfg.Scripts {
		if !tracked[sc.Name] {
			continue // never run
		}
		pos := sc.Keywords.At(sc.Source, "script")
		if err := checkLine(sc.Script, pos); err != nil {
			errs = append(errs, &service.Error{Pos: pos, Err: err, Msg: fmt.Sprintf("vrrp_script %s: script %q: %v", sc.Name, sc.Script, err)})
		}
	}
	return errs
}
