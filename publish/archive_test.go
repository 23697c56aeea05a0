package publish

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// twoTargetLayout writes two random indexes into a new layout, in the
// order given, and returns its directory.
func twoTargetLayout(t *testing.T, idxs map[string]v1.ImageIndex, order ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	l, err := NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range order {
		if _, err := l.WriteIndex(name, idxs[name], []string{"latest", "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func randomIndexes(t *testing.T) map[string]v1.ImageIndex {
	t.Helper()
	out := map[string]v1.ImageIndex{}
	for _, n := range []string{"hello", "worker"} {
		idx, err := random.Index(512, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = idx
	}
	return out
}

func TestArchiveRoundTrip(t *testing.T) {
	idxs := randomIndexes(t)
	dir := twoTargetLayout(t, idxs, "hello", "worker")
	file := filepath.Join(t.TempDir(), "out", "image.tar")
	if err := WriteArchive(dir, file); err != nil {
		t.Fatal(err)
	}
	// The archive's entries: sorted, root-owned, epoch, only the layout.
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(archiveTime) {
			t.Errorf("%s: owner %d:%d %q:%q mtime %s", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		names = append(names, h.Name)
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Fatalf("entries not sorted: %q before %q", names[i-1], names[i])
		}
	}
	if names[0] != "blobs/" || names[1] != "blobs/sha256/" || names[len(names)-2] != "index.json" || names[len(names)-1] != "oci-layout" {
		t.Fatalf("entries %v", names)
	}

	out, cleanup, err := OpenArchive(file)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	l, err := NewLayout(out)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2", len(entries))
	}
	for _, e := range entries {
		want, _ := idxs[e.Target].Digest()
		if e.Digest != want {
			t.Errorf("%s: digest %s, want %s", e.Target, e.Digest, want)
		}
		if strings.Join(e.Tags, ",") != "latest,v1" {
			t.Errorf("%s: tags %v", e.Target, e.Tags)
		}
		if err := validate.Index(e.Index); err != nil {
			t.Errorf("%s: %v", e.Target, err)
		}
	}
	cleanup()
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cleanup left %s: %v", out, err)
	}
}

// TestArchiveDeterministic: the same images give the same archive bytes,
// whatever order the targets were written into the layout.
func TestArchiveDeterministic(t *testing.T) {
	idxs := randomIndexes(t)
	a := filepath.Join(t.TempDir(), "a.tar")
	b := filepath.Join(t.TempDir(), "b.tar")
	if err := WriteArchive(twoTargetLayout(t, idxs, "hello", "worker"), a); err != nil {
		t.Fatal(err)
	}
	if err := WriteArchive(twoTargetLayout(t, idxs, "worker", "hello"), b); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ab) == 0 || !bytes.Equal(ab, bb) {
		t.Fatalf("archives differ (%d and %d bytes)", len(ab), len(bb))
	}
}

// TestArchiveWriteFailureLeavesNothing: a directory that is not a layout
// gives an error and no file; an existing file is left as it was.
func TestArchiveWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "image.tar")
	if err := WriteArchive(filepath.Join(dir, "missing"), file); err == nil {
		t.Fatal("archived a missing layout")
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file after a failed write: %v", err)
	}
	os.WriteFile(file, []byte("old"), 0o644)
	if err := WriteArchive(filepath.Join(dir, "missing"), file); err == nil {
		t.Fatal("archived a missing layout")
	}
	if b, _ := os.ReadFile(file); string(b) != "old" {
		t.Fatalf("existing file changed to %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// tarEntry is one entry of an archive read into memory. the archive at file into memory.
type tarEntry struct {
	hdr  tar.Header
	body []byte
}

// readEntries reads the archive at file into memory.
func readEntries(t *testing.T, file string) []tarEntry {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tarEntry
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, tarEntry{*h, b})
	}
}

func writeEntries(t *testing.T, file string, es []tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := e.hdr
		h.Size = int64(len(e.body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveRejects: a tampered blob is named; hostile or malformed
// entries are refused before anything reads the layout.
func TestArchiveRejects(t *testing.T) {
	idxs := randomIndexes(t)
	good := filepath.Join(t.TempDir(), "good.tar")
	if err := WriteArchive(twoTargetLayout(t, idxs, "hello", "worker"), good); err != nil {
		t.Fatal(err)
	}
	base := readEntries(t, good)
	firstBlob := -1
	for i, e := range base {
		if e.hdr.Typeflag == tar.TypeReg && strings.HasPrefix(e.hdr.Name, "blobs/sha256/") {
			firstBlob = i
			break
		}
	}
	blobName := base[firstBlob].hdr.Name
	clone := func() []tarEntry {
		out := make([]tarEntry, len(base))
		for i, e := range base {
			out[i] = tarEntry{e.hdr, bytes.Clone(e.body)}
		}
		return out
	}
	reg := func(name, body string) tarEntry {
		return tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, []byte(body)}
	}
	for _, tc := range []struct {
		name   string
		mutate func([]tarEntry) []tarEntry
		want   string
	}{
		{"tampered blob", func(es []tarEntry) []tarEntry {
			es[firstBlob].body[len(es[firstBlob].body)/2] ^= 0xff
			return es
		}, blobName + ": content does not match its digest"},
		{"absolute path", func(es []tarEntry) []tarEntry { return append(es, reg("/etc/passwd", "x")) }, "absolute"},
		{"dot dot", func(es []tarEntry) []tarEntry { return append(es, reg("blobs/../../evil", "x")) }, `".."`},
		{"symlink", func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{tar.Header{Typeflag: tar.TypeSymlink, Name: "blobs/sha256/link", Linkname: "/etc/passwd"}, nil})
		}, "links are not allowed"},
		{"hard link", func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{tar.Header{Typeflag: tar.TypeLink, Name: "blobs/sha256/hl", Linkname: blobName}, nil})
		}, "links are not allowed"},
		{"duplicate", func(es []tarEntry) []tarEntry { return append(es, es[firstBlob]) }, "duplicate entry"},
		{"duplicate with ./", func(es []tarEntry) []tarEntry {
			d := es[firstBlob]
			d.hdr.Name = "./" + d.hdr.Name
			return append(es, d)
		}, "duplicate entry"},
		{"unexpected file", func(es []tarEntry) []tarEntry { return append(es, reg("extra.txt", "x")) }, "unexpected file"},
		{"bad blob name", func(es []tarEntry) []tarEntry { return append(es, reg("blobs/sha256/abc", "x")) }, "not a sha256 blob name"},
		{"no oci-layout", func(es []tarEntry) []tarEntry { return es[:len(es)-1] }, "no oci-layout"},
		{"blob named by index.json missing", func(es []tarEntry) []tarEntry {
			var idx struct{ Manifests []struct{ Digest string } }
			for _, e := range es {
				if e.hdr.Name == "index.json" {
					json.Unmarshal(e.body, &idx)
				}
			}
			gone := "blobs/sha256/" + strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")
			return slices.DeleteFunc(es, func(e tarEntry) bool { return e.hdr.Name == gone })
		}, "which the archive does not hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.tar")
			writeEntries(t, file, tc.mutate(clone()))
			dir, cleanup, err := OpenArchive(file)
			if err == nil {
				cleanup()
				t.Fatalf("accepted, extracted to %s", dir)
			}
			var ae *ArchiveError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v, want *ArchiveError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// An archive written into a directory slipway creates leaves that
// directory ignored by git (a .gitignore of "*"), as a layout does: the
// checkout a shard was built in stays unmodified.
func TestArchiveDirIgnored(t *testing.T) {
	src := t.TempDir()
	if _, err := NewLayout(src); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "shards", "amd64", "shard.tar")
	if err := WriteArchive(src, file); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(file)), ".gitignore"))
	if err != nil || string(b) != gitignore {
		t.Fatalf("the directory created for the archive has .gitignore %q (%v)", b, err)
	}
}
