// Package preflight is everything xlb checks in a configuration before it
// touches the host: what `xlb run` and a reload refuse, and what `xlb
// check` reports, from one function, so that the two never disagree.
package preflight

import (
	"errors"

	"github.com/xlb-project/xlb/internal/config"
	"github.com/xlb-project/xlb/internal/reconcile"
	"github.com/xlb-project/xlb/internal/scriptsec"
	"github.com/xlb-project/xlb/internal/service"
)

// Options say what to check besides the configuration itself.
type Options struct {
	// SkipScripts leaves out keepalived's script security, which reads
	// the scripts on this machine: for a configuration checked elsewhere
	// than where it runs.
	SkipScripts bool
}

// Load reads the configuration at path (format as config.Load takes it)
// and checks it: the model's validation, the data path's capacity and
// script security. Every error names its file:line; warnings are returned
// with a configuration that is served.
func Load(path, format string, opts Options) (*service.Config, []service.Warning, error) {
	cfg, warns, err := config.Load(path, format)
	if err != nil {
		return nil, warns, err
	}
	capWarns, err := reconcile.Capacity(cfg)
	warns = append(warns, capWarns...)
	if !opts.SkipScripts {
		err = errors.Join(err, scriptsec.Check(cfg))
	}
	if err != nil {
		return nil, warns, err
	}
	return cfg, warns, nil
}
