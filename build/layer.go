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

// layerFile is one regular file of a layer, or a directory when dir is
// set (then data is nil).
type layerFile struct {
	path     string // absolute path in the image, e.g. /app/hello
	mode     int64
	data     func() (io.ReadCloser, int64, error)
	dir      bool
	uid, gid int // owner; 0 (root) unless set
}

// dirEntry is an explicit directory of a layer, with its own mode and owner
// (parent directories added implicitly are 0755 root).
func dirEntry(p string, mode int64, uid, gid int) layerFile {
	return layerFile{path: p, mode: mode, dir: true, uid: uid, gid: gid}
}

// reproducibleLayer builds a gzip layer from files. Entries are sorted, every
// parent directory is added, and owner (root), modes and times are fixed, so
// the same files give the same digest regardless of umask, TZ or owner.
func reproducibleLayer(files []layerFile, mtime time.Time, mt types.MediaType) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC()
	dirs := map[string]bool{}
	explicit := map[string]layerFile{}
	for _, f := range files {
		if f.dir {
			explicit[f.path] = f
		}
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
		if _, ok := explicit[d]; !ok {
			entries = append(entries, entry{name: strings.TrimPrefix(d, "/") + "/", dir: true, f: layerFile{path: d, mode: 0o755, dir: true}})
		}
	}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f.path] {
			return nil, fmt.Errorf("%s is in the layer twice", f.path)
		}
		seen[f.path] = true
		name := strings.TrimPrefix(f.path, "/")
		if f.dir {
			name += "/"
		}
		entries = append(entries, entry{name: name, dir: f.dir, f: f})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Uid:     e.f.uid,
			Gid:     e.f.gid,
			Uname:   ownerName(e.f.uid),
			Gname:   ownerName(e.f.gid),
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Mode = e.f.mode
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

// ownerName is the user or group name recorded for id: the names of the
// /etc/passwd and /etc/group slipway writes on scratch.
func ownerName(id int) string {
	switch id {
	case 0:
		return "root"
	case nonrootID:
		return "nonroot"
	}
	return ""
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
