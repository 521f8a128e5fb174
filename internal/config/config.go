// Package config reads xlb's configuration: the native YAML format, or a
// keepalived.conf through package keepalived, into the same service model.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/xlb-project/xlb/internal/config/keepalived"
	"github.com/xlb-project/xlb/internal/service"
)

// Warning is something a reader accepted but the user should know.
type Warning = service.Warning

// Formats Load accepts.
const (
	FormatAuto       = "auto"
	FormatKeepalived = "keepalived"
	FormatYAML       = "yaml"
)

// Load reads the configuration at path. format is FormatYAML,
// FormatKeepalived, or FormatAuto (or empty), which picks YAML for a
// .yaml or .yml file and keepalived.conf otherwise. The error, if any,
// joins one *service.Error per problem (see service.Errors).
func Load(path, format string) (*service.Config, []Warning, error) {
	switch format {
	case FormatAuto, "":
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml":
			format = FormatYAML
		default:
			format = FormatKeepalived
		}
	case FormatKeepalived, FormatYAML:
	default:
		return nil, nil, fmt.Errorf("unknown configuration format %q (want auto, keepalived or yaml)", format)
	}
	if format == FormatKeepalived {
		return keepalived.Load(path)
	}
	data, err := keepalived.OSFS{}.ReadFile(path)
	if err != nil {
		return nil, nil, &service.Error{Pos: service.Pos{File: path}, Msg: "cannot read configuration", Err: err}
	}
	return parseYAML(keepalived.OSFS{}, path, data)
}

// ParseYAML reads a native YAML configuration; name is used in positions.
// Unknown fields are errors. A file that extends a keepalived.conf reads
// it from the file system, relative to name's directory.
func ParseYAML(name string, data []byte) (*service.Config, error) {
	cfg, _, err := parseYAML(keepalived.OSFS{}, name, data)
	return cfg, err
}

func parseYAML(fsys keepalived.FS, name string, data []byte) (*service.Config, []Warning, error) {
	var doc fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, nil, yamlErrors(name, err)
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, nil, &service.Error{Pos: service.Pos{File: name}, Msg: "more than one YAML document; xlb reads one"}
	}
	y := &fromYAML{file: name}
	cfg := y.config(&doc)
	var warnings []Warning
	if doc.Extends.v != "" {
		base, w, err := extend(fsys, name, &doc)
		warnings = w
		if err != nil {
			return nil, warnings, err
		}
		base.BGP = cfg.BGP
		cfg = base
	}
	if len(y.errs) == 0 {
		if err := cfg.Validate(); err != nil {
			y.errs = append(y.errs, service.Errors(err)...)
		}
	}
	if len(y.errs) > 0 {
		return nil, warnings, errors.Join(y.errs...)
	}
	return cfg, warnings, nil
}

// extend reads the keepalived.conf that doc extends. keepalived.conf has
// no BGP, so such a file adds only a bgp section: everything else stays in
// the keepalived.conf, which keepalived's own tools keep reading, and is
// not written twice.
func extend(fsys keepalived.FS, name string, doc *fileYAML) (*service.Config, []Warning, error) {
	pos := service.Pos{File: name, Line: doc.Extends.line}
	if doc.Global != nil || doc.Services != nil || doc.Scripts != nil || doc.VRRP != nil || doc.SyncGroups != nil {
		return nil, nil, &service.Error{Pos: pos, Msg: "extends: a file that extends a keepalived.conf holds only its bgp section; the rest stays in " + doc.Extends.v}
	}
	path := doc.Extends.v
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(name), path)
	}
	cfg, w, err := keepalived.LoadFS(fsys, path)
	if err != nil {
		return nil, w, errors.Join(&service.Error{Pos: pos, Msg: "extends " + doc.Extends.v + ": the keepalived.conf does not load"}, err)
	}
	return cfg, w, nil
}

var (
	lineRE     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	notFoundRE = regexp.MustCompile(`^field (\S+) not found in type config\.(\w+)YAML$`)
	// yamlBlockNames name the blocks whose Go type does not read as the
	// user's name for them in "unknown field" errors.
	yamlBlockNames = map[string]string{"instance": "vrrp instance", "flap": "flap_damping"}
)

// yamlErrors turns yaml.v3's errors into positioned ones, one per problem.
func yamlErrors(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var errs []error
	for _, m := range msgs {
		e := &service.Error{Pos: service.Pos{File: name}, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sub := lineRE.FindStringSubmatch(m); sub != nil {
			e.Pos.Line, _ = strconv.Atoi(sub[1])
			e.Msg = sub[2]
			if nf := notFoundRE.FindStringSubmatch(e.Msg); nf != nil {
				block := nf[2]
				if b, ok := yamlBlockNames[block]; ok {
					block = b
				}
				e.Msg = fmt.Sprintf("unknown field %s in %s", nf[1], block)
			}
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}
