// Package keepalived reads keepalived.conf, as keepalived 2.2.7 reads it,
// into xlb's service model.
//
// The aim is that a file which works with keepalived means the same thing
// to xlb, or is refused with the line that xlb cannot honour. Where
// keepalived logs a bad entry and carries on without it (a bad address, a
// port out of range, a duplicate real server, unbalanced braces), xlb
// refuses the file: serving less than the file says is the failure users
// fear most. Keywords xlb does not act on are warnings, never silently
// dropped; features xlb does not serve (NAT and tunnel forwarding, fwmark
// services, virtual server groups, SMTP/DNS checks, ...) are errors that
// say what to use instead.
package keepalived

import (
	"errors"

	"github.com/xlb-project/xlb/internal/service"
)

// Load reads the keepalived.conf at path and every file it includes.
func Load(path string) (*service.Config, []service.Warning, error) {
	return LoadFS(OSFS{}, path)
}

// LoadFS is Load reading through fsys. The returned error, if any, joins
// one *service.Error per problem; the configuration is nil then.
func LoadFS(fsys FS, path string) (*service.Config, []service.Warning, error) {
	root, warns, err := parseTree(fsys, path)
	if err != nil {
		return nil, warns, err
	}
	c := &converter{warns: warns}
	cfg := c.config(root)
	if len(c.errs) == 0 {
		if err := cfg.Validate(); err != nil {
			c.errs = append(c.errs, service.Errors(err)...)
		}
	}
	if len(c.errs) > 0 {
		return nil, c.warns, errors.Join(c.errs...)
	}
	return cfg, c.warns, nil
}
