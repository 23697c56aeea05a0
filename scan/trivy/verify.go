package trivy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// LocallyBuilt is implemented by layers slipway assembled in this process
// (build's): their digests were computed from their own bytes, which are
// in memory, so scanning reads their uncompressed stream as it is.
type LocallyBuilt interface {
	v1.Layer
	LocallyBuilt()
}

// verifiedUncompressed returns l's decompressed stream from bytes that
// were checked against l's digest first. Trivy stops reading a layer at
// the end of its tar stream, before the end of the compressed blob, so a
// digest check at EOF (go-containerregistry's) would never run: a registry
// serving other bytes for a base layer could have the scan judge content
// that is not the content pushed. Here the whole compressed blob is copied
// to a temporary file while hashed, compared with the digest, and only then
// decompressed (from the file, not fetched again). Layers whose analysis
// is cached are never read, so this costs one extra pass over new layers.
// A compressed blob larger than limit (when positive) is refused unread
// past the limit.
func verifiedUncompressed(l v1.Layer, limit int64) (io.ReadCloser, error) {
	// A layer built in this process (build's layers) holds the bytes its
	// digest was computed from, in memory: nothing to check, nothing to
	// copy or decompress.
	if _, ok := l.(LocallyBuilt); ok {
		return l.Uncompressed()
	}
	want, err := l.Digest()
	if err != nil {
		return nil, fmt.Errorf("layer digest: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("reading layer %s: %w", want, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "slipway-layer-*")
	if err != nil {
		return nil, err
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	h := sha256.New()
	var src io.Reader = rc
	if limit > 0 {
		src = io.LimitReader(rc, limit+1)
	}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("reading layer %s: %w", want, err)
	}
	if limit > 0 && n > limit {
		cleanup()
		return nil, fmt.Errorf("layer %s: more than %s compressed (limit per layer: scan.max_layer_bytes): %w", want, humanBytes(limit), ErrTooLarge)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); want.Algorithm != "sha256" || got != want.String() {
		cleanup()
		return nil, fmt.Errorf("layer %s: digest mismatch: its content has digest %s (the registry served other bytes)", want, got)
	}
	verified, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(f.Name()) })
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("layer %s: %w", want, err)
	}
	u, err := verified.Uncompressed()
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("layer %s: %w", want, err)
	}
	return &removeOnClose{ReadCloser: u, cleanup: cleanup}, nil
}

type removeOnClose struct {
	io.ReadCloser
	cleanup func()
}

func (r *removeOnClose) Close() error {
	err := r.ReadCloser.Close()
	r.cleanup()
	return err
}
