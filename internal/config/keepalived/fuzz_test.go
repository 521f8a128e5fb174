package keepalived

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

// FuzzKeepalived feeds arbitrary text to the reader, as the main file and
// as a file it may include. It must neither panic nor hang, and a file it
// accepts must validate.
func FuzzKeepalived(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/good/includes", "testdata/good/includes/conf.d", "testdata/bad", "testdata/bad/loop"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("include *\ninclude inc.conf\n"))
	f.Add([]byte("a { b { c { d \"e\" } } }"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{
			"keepalived.conf": {Data: data},
			"inc.conf":        {Data: data},
		}
		cfg, _, err := LoadFS(fsys, "keepalived.conf")
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a configuration that does not validate: %v", err)
		}
	})
}
