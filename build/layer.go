package build

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layerFile is one regular file of a layer.
type layerFile struct {
	path string // absolute path in the image, e.g. /app/hello
	mode int64
	data func() (io.ReadCloser, int64, error)
}

// reproducibleLayer builds a gzip layer from files. Entries are sorted, every
// parent directory is added, and owner (root), modes and times are fixed, so
// the same files give the same digest regardless of umask, TZ or owner.
func reproducibleLayer(files []layerFile, mtime time.Time, mt types.MediaType) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC()
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.path); d != "/" && d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		name string
		dir  bool
		f    layerFile
	}
	var entries []entry
	for d := range dirs {
		entries = append(entries, entry{name: strings.TrimPrefix(d, "/") + "/", dir: true})
	}
	for _, f := range files {
		entries = append(entries, entry{name: strings.TrimPrefix(f.path, "/"), f: f})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Uid:     0,
			Gid:     0,
			Uname:   "root",
			Gname:   "root",
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Mode = 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			continue
		}
		rc, size, err := e.f.data()
		if err != nil {
			return nil, err
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Mode = e.f.mode
		hdr.Size = size
		// One allocation for the file (and its header and padding), not a
		// doubling series: binaries are megabytes.
		buf.Grow(int(size) + 2048)
		if err := tw.WriteHeader(hdr); err != nil {
			rc.Close()
			return nil, err
		}
		n, err := io.Copy(tw, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("adding %s to layer: %w", e.f.path, err)
		}
		if n != size {
			return nil, fmt.Errorf("adding %s to layer: size changed while reading (%d != %d)", e.f.path, n, size)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(mt), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	return &plainLayer{l}, nil
}

// plainLayer hides the tarball layer's Descriptor method, whose empty (not
// nil) annotations map makes mutate's in-memory manifest differ from the
// bytes it serialises (validate.Image flags it).
type plainLayer struct{ v1.Layer }

// LocallyBuilt marks the layer as assembled here, from bytes in memory
// (scan/trivy.LocallyBuilt: the scan reads it without re-verifying).
func (*plainLayer) LocallyBuilt() {}

// fileFromDisk reads a file of the build machine into a layer.
func fileFromDisk(src, dst string, mode int64) layerFile {
	return layerFile{path: dst, mode: mode, data: func() (io.ReadCloser, int64, error) {
		f, err := os.Open(src)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, fi.Size(), nil
	}}
}

// fileFromBytes puts b into a layer.
func fileFromBytes(b []byte, dst string, mode int64) layerFile {
	return layerFile{path: dst, mode: mode, data: func() (io.ReadCloser, int64, error) {
		return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}}
}
