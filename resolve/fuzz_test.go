package resolve

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzResolve checks that Resolve never panics and that what it returns is
// consistent: unchanged input comes back as is, changed output parses and
// has nothing left to resolve.
func FuzzResolve(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
	}
	for _, s := range []string{
		"image: slipway://hello\n",
		"{image: '127.0.0.1:5000/team/hello:v1', x: \"slipway://worker\"}",
		"image: !!str &a\n  # c\n  slipway://hello\n",
		"- image: team/api\n\r- image: \"team/api:v\\x32\"\u2028- slipway://api",
		"\uFEFFimage: |-\n  slipway://hello\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, n, warns1, err := Resolve(in, testRefs)
		if err != nil {
			return
		}
		if n == 0 {
			if !bytes.Equal(out, in) {
				t.Fatalf("nothing changed but output differs:\n%q\n%q", in, out)
			}
			return
		}
		if _, err := parse(out); err != nil {
			t.Fatalf("output does not parse: %v\n%q", err, out)
		}
		again, n2, warns, err := Resolve(out, testRefs)
		if err != nil || n2 != 0 || !bytes.Equal(again, out) {
			t.Fatalf("second pass: changed %d, err %v\nin:  %q\nout: %q", n2, err, in, out)
		}
		// What was rewritten is what was pushed: no new warning about it.
		if len(warns) != len(warns1) {
			t.Fatalf("second pass: %d warnings, first %d\nin:  %q\nout: %q", len(warns), len(warns1), in, out)
		}
	})
}
