package publish

import (
	"archive/tar"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/internal/atomicfile"
)

// ArchivePrefix marks an OCI layout in one tar file, as skopeo and podman
// name it: oci-archive:FILE.
const ArchivePrefix = "oci-archive:"

// The files of an OCI image layout, as they appear in an archive.
const (
	layoutFile = "oci-layout"
	indexFile  = "index.json"
	blobsDir   = "blobs"
)

// archiveTime is the modification time of every archive entry: the
// archive of the same layout is the same bytes on any machine.
var archiveTime = time.Unix(0, 0).UTC()

// WriteArchive writes the OCI image layout at dir as one tar file at file
// (what `skopeo copy oci-archive:FILE` and `podman load` read): oci-layout,
// index.json and every blob under blobs/, with their directories, sorted,
// owned by root (0:0, no names), mode 0644 (directories 0755), mtime the
// epoch. index.json's entries are written sorted (by their annotations,
// then digest), so the same layout gives the same bytes whatever order
// targets were written in. Other files in dir are not archived.
//
// The file is written atomically: a temporary file beside it, renamed
// over it when complete; on error nothing is left at file.
func WriteArchive(dir, file string) error {
	files, err := layoutFiles(dir)
	if err != nil {
		return err
	}
	index, err := os.ReadFile(filepath.Join(dir, indexFile))
	if err != nil {
		return fmt.Errorf("reading layout %s: %w", dir, err)
	}
	if index, err = canonicalIndex(index); err != nil {
		return fmt.Errorf("layout %s: %s: %w", dir, indexFile, err)
	}
	// As for a layout: a directory slipway creates for its output is
	// ignored by git, so the archive does not make the checkout modified.
	if err := MkdirOutput(filepath.Dir(file)); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	err = atomicfile.Write(file, 0o644, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, name := range files {
			if strings.HasSuffix(name, "/") {
				if err := tw.WriteHeader(archiveHeader(name, tar.TypeDir, 0o755, 0)); err != nil {
					return err
				}
				continue
			}
			if name == indexFile {
				if err := tw.WriteHeader(archiveHeader(name, tar.TypeReg, 0o644, int64(len(index)))); err != nil {
					return err
				}
				if _, err := tw.Write(index); err != nil {
					return err
				}
				continue
			}
			if err := copyIntoTar(tw, filepath.Join(dir, filepath.FromSlash(name)), name); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if f, ok := w.(interface{ Sync() error }); ok {
			return f.Sync()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

func archiveHeader(name string, typ byte, mode, size int64) *tar.Header {
	return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: archiveTime, Format: tar.FormatPAX}
}

func copyIntoTar(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	if err := tw.WriteHeader(archiveHeader(name, tar.TypeReg, 0o644, fi.Size())); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return err
	}
	if n != fi.Size() {
		return fmt.Errorf("%s changed while archived", src)
	}
	return nil
}

// layoutFiles lists the archive entries of the layout at dir, sorted:
// "blobs/", "blobs/<alg>/", "blobs/<alg>/<hex>", "index.json",
// "oci-layout".
func layoutFiles(dir string) ([]string, error) {
	for _, f := range []string{layoutFile, indexFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not an OCI image layout: no %s", dir, f)
		}
	}
	out := []string{indexFile, layoutFile}
	algs, err := os.ReadDir(filepath.Join(dir, blobsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading layout %s: %w", dir, err)
	}
	if len(algs) > 0 {
		out = append(out, blobsDir+"/")
	}
	for _, a := range algs {
		if !a.IsDir() {
			return nil, fmt.Errorf("layout %s: %s/%s is not a directory", dir, blobsDir, a.Name())
		}
		out = append(out, blobsDir+"/"+a.Name()+"/")
		blobs, err := os.ReadDir(filepath.Join(dir, blobsDir, a.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading layout %s: %w", dir, err)
		}
		for _, b := range blobs {
			if !b.Type().IsRegular() {
				return nil, fmt.Errorf("layout %s: %s/%s/%s is not a regular file", dir, blobsDir, a.Name(), b.Name())
			}
			out = append(out, blobsDir+"/"+a.Name()+"/"+b.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// canonicalIndex returns index.json with its manifests sorted, everything
// else as it was.
func canonicalIndex(b []byte) ([]byte, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	var descs []v1.Descriptor
	if m, ok := raw["manifests"]; ok {
		if err := json.Unmarshal(m, &descs); err != nil {
			return nil, err
		}
	}
	keys := make(map[*v1.Descriptor]string, len(descs))
	ptrs := make([]*v1.Descriptor, len(descs))
	for i := range descs {
		a, err := json.Marshal(descs[i].Annotations) // map keys sorted
		if err != nil {
			return nil, err
		}
		ptrs[i], keys[&descs[i]] = &descs[i], string(a)
	}
	slices.SortStableFunc(ptrs, func(x, y *v1.Descriptor) int {
		return cmp.Or(strings.Compare(keys[x], keys[y]), strings.Compare(x.Digest.String(), y.Digest.String()))
	})
	sorted := make([]v1.Descriptor, len(ptrs))
	for i, p := range ptrs {
		sorted[i] = *p
	}
	m, err := json.Marshal(sorted)
	if err != nil {
		return nil, err
	}
	if len(descs) > 0 || raw["manifests"] != nil {
		raw["manifests"] = m
	}
	return json.Marshal(raw)
}

// ArchiveError is a malformed or tampered archive: Entry names the tar
// entry (a blob's path) at fault.
type ArchiveError struct {
	File  string
	Entry string
	Msg   string
}

// Error names the archive, the entry and what is wrong with it.
func (e *ArchiveError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("oci-archive %s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("oci-archive %s: %s: %s", e.File, e.Entry, e.Msg)
}

// ExtractArchive unpacks the OCI layout archive at file into dir (which
// must exist and should be empty) and checks it on the way, failing
// closed, before anything reads it:
//
//   - only oci-layout, index.json, blobs/, blobs/sha256/ and
//     blobs/sha256/<64 hex> are accepted (a leading "./" is allowed), as
//     regular files and directories: absolute paths, "..", links, devices,
//     other names and duplicate entries are refused;
//   - every blob's content must hash to its name;
//   - oci-layout must declare imageLayoutVersion 1.0.0, and every
//     descriptor in index.json must name a blob of the archive, of its size.
//
// An error is an *ArchiveError naming the entry (a tampered blob is named
// by its path), or an I/O error.
func ExtractArchive(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("opening oci-archive: %w", err)
	}
	defer f.Close()
	bad := func(entry, format string, args ...any) error {
		return &ArchiveError{File: file, Entry: entry, Msg: fmt.Sprintf(format, args...)}
	}
	seen := map[string]bool{}
	sizes := map[string]int64{} // blob digest → size
	var index, layoutJSON []byte
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bad("", "not a tar file: %v", err)
		}
		name := hdr.Name
		if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
			return bad(name, "absolute or non-portable path")
		}
		for _, part := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
			if part == ".." {
				return bad(name, `path with ".."`)
			}
		}
		clean := path.Clean(strings.TrimPrefix(name, "./"))
		if clean == "." {
			if hdr.Typeflag != tar.TypeDir {
				return bad(name, "not a directory")
			}
			continue
		}
		if seen[clean] {
			return bad(name, "duplicate entry")
		}
		seen[clean] = true
		switch hdr.Typeflag {
		case tar.TypeDir:
			if clean != blobsDir && clean != blobsDir+"/sha256" {
				return bad(name, "unexpected directory (an OCI layout has only blobs/sha256/)")
			}
			if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(clean)), 0o700); err != nil {
				return err
			}
			continue
		case tar.TypeReg:
		case tar.TypeSymlink, tar.TypeLink:
			return bad(name, "links are not allowed")
		default:
			return bad(name, "entry of type %q is not allowed", hdr.Typeflag)
		}
		switch {
		case clean == layoutFile || clean == indexFile:
			if hdr.Size > 4<<20 {
				return bad(name, "too large (%d bytes)", hdr.Size)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return bad(name, "reading: %v", err)
			}
			if clean == layoutFile {
				layoutJSON = b
			} else {
				index = b
			}
			if err := os.WriteFile(filepath.Join(dir, clean), b, 0o600); err != nil {
				return err
			}
		case strings.HasPrefix(clean, blobsDir+"/sha256/"):
			hex := strings.TrimPrefix(clean, blobsDir+"/sha256/")
			h, err := v1.NewHash("sha256:" + hex)
			if err != nil || strings.Contains(hex, "/") {
				return bad(name, "not a sha256 blob name")
			}
			if err := extractBlob(tr, filepath.Join(dir, filepath.FromSlash(clean)), h); err != nil {
				return bad(name, "%v", err)
			}
			sizes[h.String()] = hdr.Size
		default:
			return bad(name, "unexpected file (an OCI layout has oci-layout, index.json and blobs/sha256/…)")
		}
	}
	if layoutJSON == nil {
		return bad("", "no %s: not an OCI image layout", layoutFile)
	}
	var lf struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(layoutJSON, &lf); err != nil || lf.Version != "1.0.0" {
		return bad(layoutFile, "imageLayoutVersion is not 1.0.0")
	}
	if index == nil {
		return bad("", "no %s: not an OCI image layout", indexFile)
	}
	var im v1.IndexManifest
	if err := json.NewDecoder(bytes.NewReader(index)).Decode(&im); err != nil {
		return bad(indexFile, "%v", err)
	}
	for _, d := range im.Manifests {
		size, ok := sizes[d.Digest.String()]
		if !ok {
			return bad(indexFile, "names %s, which the archive does not hold", d.Digest)
		}
		if size != d.Size {
			return bad(indexFile, "names %s with size %d; the blob has %d bytes", d.Digest, d.Size, size)
		}
	}
	return nil
}

// extractBlob copies r to dst, failing unless its content hashes to want.
func extractBlob(r io.Reader, dst string, want v1.Hash) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	got, _, err := v1.SHA256(io.TeeReader(r, out))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("content does not match its digest (it hashes to %s): the archive was altered", got)
	}
	return nil
}

// OpenArchive extracts the archive at file into a new private temporary
// directory, checked as ExtractArchive says, and returns the directory and
// a function that removes it. Every reader of OCI layouts (the layout
// reader of go-containerregistry, signatures, bases) reads a directory, so
// an archive is read through one; its blobs are verified while written.
func OpenArchive(file string) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", "slipway-oci-archive-")
	if err != nil {
		return "", nil, fmt.Errorf("extracting oci-archive: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err := ExtractArchive(file, dir); err != nil {
		cleanup()
		return "", nil, err
	}
	return dir, cleanup, nil
}
