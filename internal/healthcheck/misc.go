package healthcheck

import (
	"context"
	"fmt"

	"github.com/xlb-project/xlb/internal/script"
	"github.com/xlb-project/xlb/internal/service"
)

// probeMisc is MISC_CHECK: run misc_path; exit status 0 passes. With
// misc_dynamic, statuses 2-255 pass too and ask for weight status-2
// (keepalived's rule); any other status, a signal or the timeout fails.
func (p *DefaultProber) probeMisc(ctx context.Context, c service.Check) (Result, error) {
	// Checked before every run, not only at load: the script or a
	// directory above it can change under a running daemon.
	if err := CheckScriptSecurity(c); err != nil {
		return Result{}, err
	}
	argv, err := script.Split(c.MiscPath)
	if err != nil {
		return Result{}, fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	st, err := script.Command{Args: argv, User: c.User, Grace: p.termGrace}.Run(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	if c.MiscDynamic && st.Code >= 2 && st.Code <= 255 {
		w := st.Code - 2
		return Result{Weight: &w}, nil
	}
	if err := st.Err(); err != nil {
		return Result{}, fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	return Result{}, nil
}

// CheckScriptSecurity applies keepalived's script security (script.Check)
// to a MISC_CHECK's misc_path and the configuration file that names it
// (c.Source.File, if known); other kinds of check pass. The prober checks
// before every run; callers can check when a configuration is loaded.
func CheckScriptSecurity(c service.Check) error {
	if c.Kind != service.CheckMisc {
		return nil
	}
	if err := script.Check(c.MiscPath, c.Source.File); err != nil {
		return fmt.Errorf("misc_path %q: %w", c.MiscPath, err)
	}
	return nil
}
