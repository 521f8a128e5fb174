package script

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "/bin/check", want: []string{"/bin/check"}},
		{in: "  /bin/check   a\tb ", want: []string{"/bin/check", "a", "b"}},
		{in: `/bin/check "two words" 'single $x' x\ y`, want: []string{"/bin/check", "two words", "single $x", "x y"}},
		{in: `/bin/check "" end`, want: []string{"/bin/check", "", "end"}},
		{in: `/bin/check "say \"hi\""`, want: []string{"/bin/check", `say "hi"`}},
		{in: `/bin/check 'a\b'`, want: []string{"/bin/check", `a\b`}},
		{in: `/bin/check a"b c"d`, want: []string{"/bin/check", "ab cd"}},
		{in: `/bin/check "open`, wantErr: `unterminated " quote`},
		{in: `/bin/check 'open`, wantErr: `unterminated ' quote`},
		{in: `/bin/check \`, wantErr: "ends with a backslash"},
		{in: "", want: nil},
		{in: " \t ", want: nil},
	}
	for _, tt := range tests {
		got, err := Split(tt.in)
		if gotErr := errString(err); gotErr != tt.wantErr {
			t.Errorf("Split(%q) error %q, want %q", tt.in, gotErr, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Split(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
