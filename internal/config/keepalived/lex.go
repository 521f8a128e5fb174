package keepalived

import (
	"errors"
	"regexp"
	"strings"

	"github.com/xlb-project/xlb/internal/service"
)

type tokKind uint8

const (
	tokWord tokKind = iota
	tokOpen
	tokClose
	tokEOL
)

type token struct {
	kind tokKind
	text string
	line int
}

// lex splits one file into words, braces and line ends. keepalived has no
// statement separator: a statement is the words of one line up to a brace,
// so line ends are tokens too.
//
// A '#' or '!' starts a comment where a word would start (so a URL path
// like /a#b survives); a double-quoted string is one word and may contain
// spaces, braces and comment characters.
func lex(file string, data []byte) ([]token, error) {
	var toks []token
	line := 1
	src := string(data)
	for len(src) > 0 {
		var text string
		text, src, _ = strings.Cut(src, "\n")
		text = strings.TrimSuffix(text, "\r")
		var err error
		toks, err = lexLine(toks, text, line)
		if err != nil {
			return nil, &service.Error{Pos: service.Pos{File: file, Line: line}, Msg: err.Error()}
		}
		toks = append(toks, token{kind: tokEOL, line: line})
		line++
	}
	return toks, nil
}

var paramDef = regexp.MustCompile(`^\s*\$[A-Za-z_][A-Za-z0-9_]*=`)

func lexLine(toks []token, s string, line int) ([]token, error) {
	// keepalived's conditional lines and parameter definitions make the
	// file mean different things on different hosts; reading them without
	// the host's config-id would guess, so refuse instead.
	if t := strings.TrimLeft(s, " \t"); strings.HasPrefix(t, "@") {
		return nil, errors.New("conditional configuration lines (@id ...) are not supported; write the file for this host")
	}
	if paramDef.MatchString(s) {
		return nil, errors.New("parameter definitions ($NAME=...) are not supported; write the values out")
	}
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r':
			i++
		case c == '#' || c == '!':
			return toks, nil
		case c == '{':
			toks = append(toks, token{kind: tokOpen, text: "{", line: line})
			i++
		case c == '}':
			toks = append(toks, token{kind: tokClose, text: "}", line: line})
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errors.New("unterminated quoted string")
			}
			toks = append(toks, token{kind: tokWord, text: b.String(), line: line})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\v\f\r{}\"", rune(s[j])) {
				j++
			}
			toks = append(toks, token{kind: tokWord, text: s[i:j], line: line})
			i = j
		}
	}
	return toks, nil
}
