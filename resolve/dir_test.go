package resolve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeTree creates files (path → content) under a new temporary directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestResolveDir(t *testing.T) {
	deploy := string(readTestdata(t, "deployment.yaml"))
	multi := string(readTestdata(t, "multidoc.yaml"))
	files := map[string]string{
		"deploy.yaml":             deploy,
		"nested/deep/multi.YML":   multi,
		"nested/unchanged.yaml":   "# keep\nimage: busybox:1.36\n",
		"README.md":               "image: slipway://hello\n",
		".git/config.yaml":        "image: slipway://nope\n",
		"nested/.hidden/job.yaml": "image: slipway://nope\n",
	}
	dir := writeTree(t, files)
	if err := os.Chmod(filepath.Join(dir, "deploy.yaml"), 0o640); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	unchanged := filepath.Join(dir, "nested", "unchanged.yaml")
	if err := os.Chtimes(unchanged, old, old); err != nil {
		t.Fatal(err)
	}

	got, err := Dir(dir, testRefs)
	if err != nil {
		t.Fatal(err)
	}
	want := []FileResult{
		{Path: filepath.Join(dir, "deploy.yaml"), Changed: 7, Warnings: []Warning{{
			Line: 28, Value: "127.0.0.1:5000/team/hello@sha256:" + strings.Repeat("0", 64), Target: "hello",
			Reason: "is pinned to sha256:000000000000, not the digest slipway pushed (sha256:111111111111)",
		}}},
		{Path: filepath.Join(dir, "nested", "deep", "multi.YML"), Changed: 2},
		{Path: unchanged, Changed: 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}

	wantFiles := map[string]string{}
	for k, v := range files {
		wantFiles[k] = v
	}
	wantFiles["deploy.yaml"] = string(readTestdata(t, "deployment.golden.yaml"))
	wantFiles["nested/deep/multi.YML"] = string(readTestdata(t, "multidoc.golden.yaml"))
	if diff := cmp.Diff(wantFiles, readTree(t, dir)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(dir, "deploy.yaml")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("deploy.yaml mode %v, err %v; want 0640", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(unchanged); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("unchanged.yaml was rewritten (mtime %v, want %v), err %v", fi.ModTime(), old, err)
	}
}

// TestResolveDirAllOrNothing checks that one bad file stops every write.
func TestResolveDirAllOrNothing(t *testing.T) {
	for _, tc := range []struct {
		name, bad string
		want      []string
	}{
		{"invalid YAML", "a: 1\n b: 2\n", []string{"z-bad.yaml", "line 2"}},
		{"unknown target", "a: 1\nimage: slipway://nope\n", []string{"z-bad.yaml", "line 2", `"nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{
				"a-good.yaml": "image: slipway://hello\n",
				"z-bad.yaml":  tc.bad,
			}
			dir := writeTree(t, files)
			_, err := Dir(dir, testRefs)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if diff := cmp.Diff(files, readTree(t, dir)); diff != "" {
				t.Errorf("files changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveFile(t *testing.T) {
	dir := writeTree(t, map[string]string{"pod.yaml": "# pod\nimage: slipway://hello # here\n"})
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("pod.yaml", link); err != nil {
		t.Fatal(err)
	}
	fr, err := ResolveFile(link, testRefs)
	if err != nil || fr.Changed != 1 || fr.Path != link {
		t.Fatalf("ResolveFile = %+v, %v; want 1 change in %s, nil", fr, err, link)
	}
	want := map[string]string{"pod.yaml": "# pod\nimage: " + helloRef + " # here\n"}
	got := readTree(t, dir)
	delete(got, "link.yaml")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link.yaml is no longer a symlink (err %v)", err)
	}
	if _, err := ResolveFile(filepath.Join(dir, "missing.yaml"), testRefs); err == nil {
		t.Error("missing file: no error")
	}
}
