package publish

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// FuzzExtractArchive: any input either is refused or extracts only the
// files of an OCI layout, inside the directory given, every blob named by
// its digest; nothing is written beside that directory.
func FuzzExtractArchive(f *testing.F) {
	dir := twoTargetLayoutF(f)
	good := filepath.Join(f.TempDir(), "good.tar")
	if err := WriteArchive(dir, good); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Fuzz(func(t *testing.T, in []byte) {
		parent := t.TempDir()
		file := filepath.Join(parent, "in.tar")
		if err := os.WriteFile(file, in, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(parent, "out")
		if err := os.Mkdir(out, 0o700); err != nil {
			t.Fatal(err)
		}
		err := ExtractArchive(file, out)
		if ents, _ := os.ReadDir(parent); len(ents) != 2 {
			t.Fatalf("extraction wrote beside its directory: %v", ents)
		}
		if err != nil {
			return
		}
		filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == out {
				return err
			}
			rel, _ := filepath.Rel(out, p)
			rel = filepath.ToSlash(rel)
			switch {
			case d.IsDir() && (rel == "blobs" || rel == "blobs/sha256"):
			case !d.IsDir() && (rel == "oci-layout" || rel == "index.json" || strings.HasPrefix(rel, "blobs/sha256/")):
				if !d.Type().IsRegular() {
					t.Fatalf("%s is not a regular file", rel)
				}
			default:
				t.Fatalf("extracted %s", rel)
			}
			return nil
		})
	})
}

// twoTargetLayoutF is a layout with two random targets, for fuzz seeds.
func twoTargetLayoutF(f *testing.F) string {
	f.Helper()
	dir := filepath.Join(f.TempDir(), "oci")
	l, err := NewLayout(dir)
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []string{"hello", "worker"} {
		idx, err := random.Index(256, 2, 2)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := l.WriteIndex(n, idx, []string{"latest"}); err != nil {
			f.Fatal(err)
		}
	}
	return dir
}
