package service

import (
	"strconv"
	"time"
)

// Pos is where something was written: a file and a 1-based line.
type Pos struct {
	File string
	Line int
}

// IsValid reports whether p names a line.
func (p Pos) IsValid() bool { return p.Line > 0 }

// String returns "file:line", or "" for an unknown position.
func (p Pos) String() string {
	if !p.IsValid() {
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Error is a problem at a position in a configuration file. Readers and
// Validate report every problem they find, each as an *Error, joined with
// errors.Join; Errors splits them again.
type Error struct {
	Pos Pos
	Msg string
	Err error // the underlying cause, if any
}

// Error returns "file:line: message".
func (e *Error) Error() string {
	if p := e.Pos.String(); p != "" {
		return p + ": " + e.Msg
	}
	return e.Msg
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errors flattens err, as joined by errors.Join (possibly nested), into its
// individual errors, so a caller can print one per line.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Errors(e)...)
		}
		return out
	}
	return []error{err}
}

// Warning is something a reader accepted but the user should know: a
// keyword xlb ignores, a default it applied, a value it adjusted.
type Warning struct {
	Pos Pos
	Msg string
}

// String returns "file:line: warning: message".
func (w Warning) String() string {
	if p := w.Pos.String(); p != "" {
		return p + ": warning: " + w.Msg
	}
	return "warning: " + w.Msg
}

// keepalived 2.2.7's defaults, which both readers apply so that a
// keepalived.conf and its YAML translation mean the same thing.
const (
	DefaultDelayLoop            = 60 * time.Second
	DefaultConnectTimeout       = 5 * time.Second
	DefaultRetry                = 1 // MISC_CHECK: 0
	DefaultDelayBeforeRetry     = 1 * time.Second
	DefaultHTTPDelayBeforeRetry = 3 * time.Second
	DefaultWeight               = 1
	DefaultPersistence          = 360 * time.Second
	DefaultScheduler            = "wlc"
	DefaultVRRPPriority         = 100
	DefaultVRRPAdvertInt        = 1 * time.Second
	DefaultVRRPVersion          = 2
	DefaultGARPMasterDelay      = 5 * time.Second
	DefaultGARPMasterRepeat     = 5
	DefaultVRRPScriptInterval   = 1 * time.Second
	DefaultVRRPScriptRiseOrFall = 1
	DefaultHTTPStatusMin        = 200
	DefaultHTTPStatusMax        = 299
	MaxWeight                   = 1<<31 - 1
)

// Keywords maps a block's keywords to where each was written.
type Keywords map[string]Pos

// At returns where the first of kws that was written is, else block: the
// block's own position, for a value that came from a default.
func (k Keywords) At(block Pos, kws ...string) Pos {
	for _, kw := range kws {
		if p, ok := k[kw]; ok {
			return p
		}
	}
	return block
}

// Set records that kw was written at p.
func (k *Keywords) Set(kw string, p Pos) {
	if *k == nil {
		*k = Keywords{}
	}
	(*k)[kw] = p
}
