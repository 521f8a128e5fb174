package keepalived

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/xlb-project/xlb/internal/service"
)

// Limits that keep a hostile or broken file set (an include fan-out, a
// device named as a file) from exhausting memory or time.
const (
	maxFileSize     = 8 << 20
	maxIncludeDepth = 32
	maxFiles        = 1000
	maxTokens       = 4 << 20
)

// FS is what the reader reads files through: the operating system
// (OSFS) or, in tests and fuzzing, an in-memory set such as fstest.MapFS.
type FS interface {
	ReadFile(name string) ([]byte, error)
	Glob(pattern string) ([]string, error)
}

// OSFS reads the host's files.
type OSFS struct{}

// ReadFile reads a regular file of at most 8 MiB.
func (OSFS) ReadFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFileSize)
	}
	return data, nil
}

// Glob expands a shell pattern.
func (OSFS) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// node is one statement: a keyword, its arguments and, for a block, the
// statements inside the braces.
type node struct {
	kw       string
	args     []string
	block    bool
	children []*node
	pos      service.Pos
}

// builder turns the token streams of a file and its includes into one
// statement tree.
type builder struct {
	fsys   FS
	stack  []*node // open blocks; stack[0] is the file's top level
	files  []string
	nfiles int
	ntoks  int
	errs   []error
	warns  []service.Warning
}

func (b *builder) errorf(pos service.Pos, format string, args ...any) {
	b.errs = append(b.errs, &service.Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// parseTree reads path and everything it includes.
func parseTree(fsys FS, path string) (*node, []service.Warning, error) {
	root := &node{block: true}
	b := &builder{fsys: fsys, stack: []*node{root}}
	data, err := fsys.ReadFile(path)
	if err != nil {
		return nil, nil, &service.Error{Pos: service.Pos{File: path}, Msg: "cannot read: " + unwrapPathError(err), Err: err}
	}
	b.file(path, data, service.Pos{})
	return root, b.warns, errors.Join(b.errs...)
}

// unwrapPathError drops the path an *fs.PathError repeats, since the
// message is printed after it anyway.
func unwrapPathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (b *builder) file(path string, data []byte, from service.Pos) {
	b.nfiles++
	if b.nfiles > maxFiles {
		b.errorf(from, "more than %d files included; refusing to read more", maxFiles)
		return
	}
	toks, err := lex(path, data)
	if err != nil {
		b.errs = append(b.errs, err)
		return
	}
	b.ntoks += len(toks)
	if b.ntoks > maxTokens {
		b.errorf(from, "configuration is larger than %d words; refusing to read more", maxTokens)
		return
	}
	b.files = append(b.files, path)
	defer func() { b.files = b.files[:len(b.files)-1] }()

	base := len(b.stack)
	var cur, last *node
	top := func() *node { return b.stack[len(b.stack)-1] }
	finish := func() {
		if cur == nil {
			return
		}
		top().children = append(top().children, cur)
		last, cur = cur, nil
		if last.kw == "include" {
			top().children = top().children[:len(top().children)-1]
			b.include(last)
			last = nil
		}
	}
	for _, t := range toks {
		pos := service.Pos{File: path, Line: t.line}
		switch t.kind {
		case tokWord:
			if cur == nil {
				cur = &node{kw: t.text, pos: pos}
			} else {
				cur.args = append(cur.args, t.text)
			}
		case tokEOL:
			finish()
		case tokOpen:
			switch {
			case cur != nil:
				if cur.kw == "include" {
					b.errorf(pos, "include does not take a block")
				}
				cur.block = true
				top().children = append(top().children, cur)
				b.stack = append(b.stack, cur)
				cur = nil
			case last != nil && !last.block:
				// The brace is on the line after its keyword.
				last.block = true
				b.stack = append(b.stack, last)
			default:
				b.errorf(pos, "unexpected {: no keyword before it")
				// Keep the braces balanced so later errors stay precise.
				anon := &node{kw: "{", block: true, pos: pos}
				b.stack = append(b.stack, anon)
			}
			last = nil
		case tokClose:
			finish()
			if len(b.stack) <= base {
				b.errorf(pos, "unexpected }: no block is open")
			} else {
				b.stack = b.stack[:len(b.stack)-1]
			}
			last = nil
		}
	}
	finish()
	if len(b.stack) > base {
		open := b.stack[len(b.stack)-1]
		b.errorf(open.pos, "%s block is not closed: missing } before the end of the file", open.kw)
		b.stack = b.stack[:base]
	}
}

func (b *builder) include(n *node) {
	if len(n.args) != 1 {
		b.errorf(n.pos, "include takes one file name or pattern, got %d", len(n.args))
		return
	}
	pattern := n.args[0]
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(n.pos.File), pattern)
	}
	if len(b.files) >= maxIncludeDepth {
		b.errorf(n.pos, "include %s: includes nested more than %d deep", n.args[0], maxIncludeDepth)
		return
	}
	matches, err := b.fsys.Glob(pattern)
	if err != nil {
		b.errorf(n.pos, "include %s: %v", n.args[0], err)
		return
	}
	if len(matches) == 0 {
		if strings.ContainsAny(pattern, "*?[") {
			b.warns = append(b.warns, service.Warning{Pos: n.pos, Msg: fmt.Sprintf("include %s matches no files", n.args[0])})
		} else {
			b.errorf(n.pos, "include %s: no such file", n.args[0])
		}
		return
	}
	for _, m := range matches {
		for i, f := range b.files {
			if filepath.Clean(f) == filepath.Clean(m) {
				chain := append(append([]string{}, b.files[i:]...), m)
				b.errorf(n.pos, "include loop: %s", strings.Join(chain, " includes "))
				return
			}
		}
		data, err := b.fsys.ReadFile(m)
		if err != nil {
			b.errorf(n.pos, "include %s: cannot read %s: %s", n.args[0], m, unwrapPathError(err))
			continue
		}
		b.file(m, data, n.pos)
	}
}
