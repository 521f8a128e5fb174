package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/xlb-project/xlb/internal/balancer"
)

// idsPath is where the daemon keeps its backend ids: beside its socket,
// in the runtime directory, which lives as long as the pinned maps do
// (until reboot) and no longer.
func (d *Daemon) idsPath() string {
	return filepath.Join(filepath.Dir(d.opts.Socket), "backend-ids.json")
}

// readIDs reads the ids an earlier run saved; nil when there are none.
func readIDs(path string) (*balancer.IDs, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids balancer.IDs
	if err := json.Unmarshal(b, &ids); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &ids, nil
}

// writeIDs replaces the file at path with ids, atomically: a crash while
// writing leaves the previous version.
func writeIDs(path string, ids balancer.IDs) error {
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	if err := socketDir(path); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".backend-ids-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// removeIDs removes the saved ids of a run that stops cleanly: its flow
// table goes with its pins.
func removeIDs(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
