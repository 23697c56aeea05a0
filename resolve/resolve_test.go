package resolve

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	hDigest = "sha256:" + strings.Repeat("1", 64)
	wDigest = "sha256:" + strings.Repeat("2", 64)
	aDigest = "sha256:" + strings.Repeat("3", 64)

	helloRef  = "127.0.0.1:5000/team/hello@" + hDigest
	workerRef = "127.0.0.1:5000/team/worker@" + wDigest

	testRefs = map[string]Pushed{
		"hello":  {Ref: helloRef, Tags: []string{"latest", "v1"}},
		"worker": {Ref: workerRef, Tags: []string{"latest", "nightly", "v1.2.3"}},
		"api":    {Ref: "index.docker.io/team/api@" + aDigest, Tags: []string{"v2"}},
	}
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkOnlyValuesChanged fails unless out is in with, on some lines, one
// occurrence of an old value of repl replaced by its new value: every other
// byte (comments, indentation, quotes, line endings) must be the same.
func checkOnlyValuesChanged(t *testing.T, in, out []byte, repl [][2]string) {
	t.Helper()
	inLines := strings.SplitAfter(string(in), "\n")
	outLines := strings.SplitAfter(string(out), "\n")
	if len(inLines) != len(outLines) {
		t.Fatalf("line count changed: %d → %d", len(inLines), len(outLines))
	}
	for i := range inLines {
		if inLines[i] == outLines[i] {
			continue
		}
		ok := false
		for _, r := range repl {
			if strings.Replace(inLines[i], r[0], r[1], 1) == outLines[i] {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("line %d changed beyond a value:\n in: %q\nout: %q", i+1, inLines[i], outLines[i])
		}
	}
}

func TestResolveGolden(t *testing.T) {
	repl := [][2]string{
		{"slipway://hello", helloRef},
		{"slipway://worker", workerRef},
		{"127.0.0.1:5000/team/hello ", "127.0.0.1:5000/team/hello@" + hDigest + " "},
		{"127.0.0.1:5000/team/worker:v1.2.3", "127.0.0.1:5000/team/worker@" + wDigest},
		{"127.0.0.1:5000/team/worker:latest", "127.0.0.1:5000/team/worker@" + wDigest},
		{"127.0.0.1:5000/team/worker:nightly", "127.0.0.1:5000/team/worker@" + wDigest},
		{"team/api:v2", "team/api@" + aDigest},
	}
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }
	for _, tc := range []struct {
		name    string
		crlf    bool
		changed int
	}{
		{"deployment", false, 7},
		{"deployment", true, 7},
		{"multidoc", false, 2},
		{"multidoc", true, 2},
	} {
		t.Run(tc.name+map[bool]string{false: "", true: "/crlf"}[tc.crlf], func(t *testing.T) {
			in := readTestdata(t, tc.name+".yaml")
			want := readTestdata(t, tc.name+".golden.yaml")
			if tc.crlf {
				in, want = crlf(in), crlf(want)
			}
			out, n, _, err := Resolve(in, testRefs)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.changed {
				t.Errorf("changed = %d, want %d", n, tc.changed)
			}
			if diff := cmp.Diff(string(want), string(out)); diff != "" {
				t.Errorf("output mismatch (-want +got):\n%s", diff)
			}
			checkOnlyValuesChanged(t, in, out, repl)
			if tc.crlf && bytes.Count(out, []byte("\n")) != bytes.Count(out, []byte("\r\n")) {
				t.Error("output has bare LF line endings")
			}
			// Idempotent: the output has nothing left to resolve.
			again, n, _, err := Resolve(out, testRefs)
			if err != nil || n != 0 || !bytes.Equal(again, out) {
				t.Errorf("second pass: changed %d, err %v, same bytes %v", n, err, bytes.Equal(again, out))
			}
		})
	}
}

func TestResolve(t *testing.T) {
	h := helloRef
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain placeholder", "image: slipway://hello\n", "image: " + h + "\n"},
		{"single-quoted placeholder", "image: 'slipway://hello' # c\n", "image: '" + h + "' # c\n"},
		{"double-quoted placeholder", `image: "slipway://hello"` + "\n", `image: "` + h + `"` + "\n"},
		{"double-quoted with escapes", `x: "slipway://hel\x6co"`, `x: "` + h + `"`},
		{"placeholder anywhere", "a:\n  b: [1, slipway://hello]\n  c:\n  - slipway://worker\n", "a:\n  b: [1, " + h + "]\n  c:\n  - " + workerRef + "\n"},
		{"placeholder without newline at EOF", "image: slipway://hello", "image: " + h},
		{"placeholder as a key is kept", "slipway://hello: x\n", "slipway://hello: x\n"},
		{"bare repo", "image: 127.0.0.1:5000/team/hello\n", "image: 127.0.0.1:5000/team/hello@" + hDigest + "\n"},
		{"tagged repo", "image: 127.0.0.1:5000/team/hello:v1\n", "image: 127.0.0.1:5000/team/hello@" + hDigest + "\n"},
		{"flow mapping", "c: {image: 127.0.0.1:5000/team/hello:v1, name: x}\n", "c: {image: 127.0.0.1:5000/team/hello@" + hDigest + ", name: x}\n"},
		{"docker hub, as written", "- image: docker.io/team/api\n- image: team/api:v2\n", "- image: docker.io/team/api@" + aDigest + "\n- image: team/api@" + aDigest + "\n"},
		{"multibyte text before the value", "c: {näme: ünïcode, image: slipway://hello}\n", "c: {näme: ünïcode, image: " + h + "}\n"},
		{"byte order mark", "\uFEFFimage: slipway://hello\n", "\uFEFFimage: " + h + "\n"},
		{"tag and anchor", "image: !!str &a 'slipway://hello'\nb: *a\n", "image: !!str &a '" + h + "'\nb: *a\n"},
		{"property then comment then value", "image: &a # note\n  slipway://hello\n", "image: &a # note\n  " + h + "\n"},
		{"prefix-sharing repo is kept", "image: 127.0.0.1:5000/team/hello-extra:1\n", ""},
		{"longer repo name is kept", "image: 127.0.0.1:5000/team/hellox\n", ""},
		{"sub-repository is kept", "image: 127.0.0.1:5000/team/hello/sub:1\n", ""},
		{"other registry is kept", "image: team/hello:v1\n", ""},
		{"digest pin is kept", "image: 127.0.0.1:5000/team/hello@sha256:" + strings.Repeat("0", 64) + "\n", ""},
		{"tag and digest pin is kept", "image: 127.0.0.1:5000/team/hello:v1@sha256:" + strings.Repeat("0", 64) + "\n", ""},
		{"repo outside image: is kept", "name: 127.0.0.1:5000/team/hello:v1\n", ""},
		{"not a reference", "image: {repository: 127.0.0.1:5000/team/hello}\nimage2: x\n", ""},
		{"invalid reference under image:", "image: 'Not A Ref!'\n", ""},
		{"empty", "", ""},
		{"comments only", "# nothing\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				want = tc.in
			}
			out, n, _, err := Resolve([]byte(tc.in), testRefs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, string(out)); diff != "" {
				t.Errorf("output mismatch (-want +got):\n%s", diff)
			}
			if wantN := strings.Count(tc.want, "@sha256:") - strings.Count(tc.in, "@sha256:"); want != tc.in && n != wantN {
				t.Errorf("changed = %d, want %d", n, wantN)
			}
			if tc.want == "" && n != 0 {
				t.Errorf("changed = %d, want 0", n)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		refs map[string]Pushed
		want []string // substrings of the error
	}{
		{"unknown target", "a: 1\nb:\n  image: slipway://nope\n", testRefs, []string{"line 3", `unknown target "nope"`, "api, hello, worker"}},
		{"unknown target, no results", "- slipway://hello\n", nil, []string{"line 1", `"hello"`, "none"}},
		{"empty target", "x: slipway://\n", testRefs, []string{"line 1", `unknown target ""`}},
		{"invalid YAML", "a: 1\nb: [\nc: d: e\n", testRefs, []string{"invalid YAML", "line"}},
		{"invalid YAML in a later document", "a: slipway://hello\n---\n\tb: 1\n", testRefs, []string{"invalid YAML", "line 3"}},
		{"block scalar", "image: |-\n  slipway://hello\n", testRefs, []string{"line 1", "block scalar"}},
		{"ambiguous repository", "image: 127.0.0.1:5000/team/hello:v1\n", map[string]Pushed{
			"a": {Ref: helloRef, Tags: []string{"v1"}}, "b": {Ref: "127.0.0.1:5000/team/hello@" + wDigest, Tags: []string{"v1"}},
		}, []string{"line 1", "matches targets a and b"}},
		{"reference without digest", "x: 1\n", map[string]Pushed{"hello": {Ref: "127.0.0.1:5000/team/hello:v1"}}, []string{"target hello", "127.0.0.1:5000/team/hello:v1"}},
		{"UTF-16", "\xFF\xFEi\x00", testRefs, []string{"UTF-16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, _, err := Resolve([]byte(tc.in), tc.refs)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			if out != nil {
				t.Errorf("output with an error: %q", out)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestUnknownTargetError(t *testing.T) {
	_, _, _, err := Resolve([]byte("a:\n  - b: slipway://gone\n"), testRefs)
	var ute *UnknownTargetError
	if !errors.As(err, &ute) {
		t.Fatalf("error %v is not an *UnknownTargetError", err)
	}
	if diff := cmp.Diff(&UnknownTargetError{Target: "gone", Line: 2, Known: []string{"api", "hello", "worker"}}, ute); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestResolveLongLine guards against converting positions in quadratic time:
// 50,000 values on one line took minutes, now a fraction of a second.
func TestResolveLongLine(t *testing.T) {
	const n = 50000
	in := "args: [" + strings.Repeat("slipway://hello, ", n) + "end]\n"
	want := "args: [" + strings.Repeat(helloRef+", ", n) + "end]\n"
	out, changed, _, err := Resolve([]byte(in), testRefs)
	if err != nil || changed != n || string(out) != want {
		t.Fatalf("changed %d, err %v, output as expected %v", changed, err, string(out) == want)
	}
}

// TestResolveWarnings (issue 14 item 11): only placeholders, bare
// repositories and tags slipway pushed are rewritten; a reference pinned
// to another tag or digest of a target's repository is left alone with a
// warning naming the line; the pushed digest itself is silent.
func TestResolveWarnings(t *testing.T) {
	other := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		name, in, want string
		warn           []string // substrings of the one warning, none when nil
	}{
		{"pushed tag", "image: 127.0.0.1:5000/team/hello:v1\n", "image: 127.0.0.1:5000/team/hello@" + hDigest + "\n", nil},
		{"bare", "image: 127.0.0.1:5000/team/hello\n", "image: 127.0.0.1:5000/team/hello@" + hDigest + "\n", nil},
		{"other tag", "image: 127.0.0.1:5000/team/hello:v9.9.9\n", "", []string{"line 1", `"127.0.0.1:5000/team/hello:v9.9.9"`, "target hello", "tag v9.9.9", "did not push", "latest, v1", "left alone"}},
		{"other tag, docker hub", "x: 1\nimage: team/api:v9\n", "", []string{"line 2", "target api", "tag v9"}},
		{"other digest", "image: 127.0.0.1:5000/team/hello@" + other + "\n", "", []string{"line 1", "pinned to sha256:000000000000", "sha256:111111111111"}},
		{"other tag with the pushed digest", "image: 127.0.0.1:5000/team/hello:v9@" + hDigest + "\n", "", []string{"line 1", "target hello"}},
		{"pushed digest", "image: 127.0.0.1:5000/team/hello@" + hDigest + "\n", "", nil},
		{"pushed tag and digest", "image: 127.0.0.1:5000/team/hello:v1@" + hDigest + "\n", "", nil},
		{"another repository", "image: 127.0.0.1:5000/team/other:v9\n", "", nil},
		{"not under image:", "value: 127.0.0.1:5000/team/hello:v9\n", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == "" {
				want = tc.in
			}
			out, _, warns, err := Resolve([]byte(tc.in), testRefs)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != want {
				t.Errorf("output %q, want %q", out, want)
			}
			if tc.warn == nil {
				if len(warns) != 0 {
					t.Fatalf("warnings %v, want none", warns)
				}
				return
			}
			if len(warns) != 1 {
				t.Fatalf("warnings %v, want one", warns)
			}
			for _, s := range tc.warn {
				if !strings.Contains(warns[0].String(), s) {
					t.Errorf("warning %q does not contain %q", warns[0], s)
				}
			}
		})
	}
}
