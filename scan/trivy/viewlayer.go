package trivy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// viewLayer is one layer of the view; Uncompressed is the only content
// Trivy reads.
type viewLayer struct {
	view  *layerView
	index int // source layer, or -1 for the correction layer
	id    v1.Hash
}

var _ v1.Layer = (*viewLayer)(nil)

// Digest is the source layer's digest (Trivy records it); the correction
// layer has its view ID.
func (l *viewLayer) Digest() (v1.Hash, error) {
	if l.index < 0 {
		return l.id, nil
	}
	return l.view.sources[l.index].digest, nil
}

// DiffID is the view ID.
func (l *viewLayer) DiffID() (v1.Hash, error) { return l.id, nil }

// Compressed is not available: Trivy reads Uncompressed only.
func (l *viewLayer) Compressed() (io.ReadCloser, error) {
	return nil, errors.New("scan view layers have no compressed form")
}

// Size is the source layer's size.
func (l *viewLayer) Size() (int64, error) {
	if l.index < 0 {
		return 0, nil
	}
	return l.view.sources[l.index].layer.Size()
}

// MediaType is an uncompressed OCI layer.
func (l *viewLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }

// Uncompressed streams the view of the layer as a tar. The end-of-archive
// marker is written only after the source has been read to its end and
// matched its diff_id, so Trivy never completes (and caches) the analysis
// of content that failed verification.
func (l *viewLayer) Uncompressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		var err error
		defer func() { pw.CloseWithError(err) }()
		defer recoverTo(&err, l.id)
		err = l.write(pw)
	}()
	return pr, nil
}

func (l *viewLayer) write(w io.Writer) error {
	v := l.view
	tw := tar.NewWriter(w)
	var need []origin
	if l.index < 0 {
		for _, f := range v.fixes {
			if !f.whiteout {
				need = append(need, f.origin)
			}
		}
	} else {
		for _, o := range v.links[l.index] {
			need = append(need, o)
		}
	}
	contents, cleanup, err := v.extract(need)
	if err != nil {
		return err
	}
	defer cleanup()

	if l.index < 0 {
		for _, f := range v.fixes {
			if f.whiteout {
				if err := tw.WriteHeader(&tar.Header{Name: path.Join(path.Dir(f.path), ".wh."+path.Base(f.path)), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
					return err
				}
				continue
			}
			if err := writeFile(tw, f.path, f.mode, contents[f.origin]); err != nil {
				return err
			}
		}
		return tw.Close()
	}

	src := v.sources[l.index]
	// The rest of the stream is verified before the archive ends.
	err = src.walk(func(i int, h *tar.Header, r io.Reader) error {
		e := indexEntryOf(h)
		switch e.Type {
		case entryHardlink:
			o, ok := v.links[l.index][i]
			if !ok {
				return fmt.Errorf("layer %s: entry %d changed between reads", src.digest, i)
			}
			if err := writeFile(tw, e.Path, contents[o].mode, contents[o]); err != nil {
				return err
			}
		case entryFile:
			if err := tw.WriteHeader(&tar.Header{Name: e.Path, Typeflag: tar.TypeReg, Mode: h.Mode, Size: h.Size, Format: tar.FormatPAX}); err != nil {
				return err
			}
			if _, err := io.Copy(tw, r); err != nil {
				return fmt.Errorf("layer %s: %w", src.digest, err)
			}
		case entryWhiteout, entryOpaque:
			// Trivy's walker reads the marker's name only.
			if err := tw.WriteHeader(&tar.Header{Name: cleanEntryPath(h.Name), Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

type fileContent struct {
	path string
	mode int64
	size int64
}

func writeFile(tw *tar.Writer, name string, mode int64, c fileContent) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: c.size, Format: tar.FormatPAX}); err != nil {
		return err
	}
	f, err := os.Open(c.path)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err != nil {
		return err
	}
	if n != c.size {
		return fmt.Errorf("%s: linked content has %d bytes, want %d", name, n, c.size)
	}
	return nil
}

// extract copies the content of each origin to a temporary file, reading
// each source layer holding one once (and verifying it).
func (v *layerView) extract(need []origin) (map[origin]fileContent, func(), error) {
	out := map[origin]fileContent{}
	var files []string
	cleanup := func() {
		for _, f := range files {
			os.Remove(f)
		}
	}
	byLayer := map[int][]int{}
	for _, o := range need {
		if !slices.Contains(byLayer[o.Layer], o.Entry) {
			byLayer[o.Layer] = append(byLayer[o.Layer], o.Entry)
		}
	}
	for li, entries := range byLayer {
		src := v.sources[li]
		err := src.walk(func(i int, h *tar.Header, r io.Reader) error {
			if !slices.Contains(entries, i) {
				return nil
			}
			f, err := os.CreateTemp("", "slipway-linked-*")
			if err != nil {
				return err
			}
			files = append(files, f.Name())
			n, err := io.Copy(f, r)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("layer %s: %w", src.digest, err)
			}
			out[origin{li, i}] = fileContent{path: f.Name(), mode: h.Mode, size: n}
			return nil
		})
		if err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	for _, o := range need {
		if _, ok := out[o]; !ok {
			cleanup()
			return nil, nil, fmt.Errorf("layer %s: entry %d changed between reads", v.sources[o.Layer].digest, o.Entry)
		}
	}
	return out, cleanup, nil
}

// recoverTo turns a panic on hostile input, in a goroutine of the scan,
// into an error naming the layer.
func recoverTo(err *error, layer v1.Hash) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("layer %s: panic while reading: %v", layer, r)
	}
}
