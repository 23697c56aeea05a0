package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/publish"
)

// TestOpenArchiveRef: oci-archive:FILE is unpacked for the layout readers,
// what they say names the archive (not the temporary directory), and the
// directory is removed when done.
func TestOpenArchiveRef(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	l, err := publish.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"hello", "worker"} {
		idx, err := random.Index(128, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.WriteIndex(n, idx, nil); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "images.tar")
	if err := publish.WriteArchive(dir, file); err != nil {
		t.Fatal(err)
	}
	ref, named, done, err := openArchiveRef(publish.ArchivePrefix + file)
	if err != nil {
		t.Fatal(err)
	}
	tmp := strings.TrimPrefix(ref, build.LayoutPrefix)
	// Two targets and no digest: ambiguous, said of the archive.
	_, _, err = build.OpenLayoutRef(ref, nil)
	err = renameError(err, named)
	if err == nil || !strings.Contains(err.Error(), publish.ArchivePrefix+file) || strings.Contains(err.Error(), tmp) {
		t.Fatalf("error %v: want it to name %s and not %s", err, file, tmp)
	}
	if errors.Unwrap(err) == nil {
		t.Error("the renamed error does not unwrap")
	}
	done()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", tmp, err)
	}
	// Other references pass through.
	if r, n, d, err := openArchiveRef("registry.example.com/a:b"); err != nil || r != "registry.example.com/a:b" || n("x") != "x" {
		t.Errorf("openArchiveRef of a registry reference = %q, %v", r, err)
	} else {
		d()
	}
}
