package trivy

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrTooLarge is wrapped by the error a scan returns when a layer, or the
// layers of one image together, decompress to more bytes than allowed.
var ErrTooLarge = errors.New("decompressed size over the limit")

// decompressBudget caps the bytes read from decompressed layers: per
// layer stream, and over every stream of one image scan together (Trivy
// may read a layer more than once).
type decompressBudget struct {
	perLayer, total int64
	used            atomic.Int64
}

func newBudget(perLayer, total int64) *decompressBudget {
	return &decompressBudget{perLayer: perLayer, total: total}
}

// wrap returns l with its Uncompressed stream capped. Trivy decides
// whether a layer is compressed by looking for a struct field named
// UncompressedLayer (go-containerregistry#701); the wrapper keeps the
// answer of the layer it wraps.
func (b *decompressBudget) wrap(l v1.Layer) v1.Layer {
	c := cappedLayer{Layer: l, budget: b}
	if t := reflect.TypeOf(l); t != nil && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		if _, ok := t.Elem().FieldByName("UncompressedLayer"); ok {
			return &cappedUncompressedLayer{cappedLayer: c}
		}
	}
	return &c
}

type cappedLayer struct {
	v1.Layer
	budget *decompressBudget
}

// cappedUncompressedLayer is a cappedLayer over a layer that Trivy treats
// as uncompressed; the field exists only for Trivy's reflection.
type cappedUncompressedLayer struct {
	cappedLayer
	UncompressedLayer struct{}
}

// Uncompressed implements v1.Layer: the bytes are checked against the
// layer's digest first (see verifiedUncompressed), and the stream fails
// with ErrTooLarge once it passes the per-layer limit or the image's total.
func (c *cappedLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := verifiedUncompressed(c.Layer, c.budget.perLayer)
	if err != nil {
		return nil, err
	}
	return &cappedReader{rc: rc, layer: c.Layer, b: c.budget}, nil
}

type cappedReader struct {
	rc    io.ReadCloser
	layer v1.Layer
	b     *decompressBudget
	n     int64
}

func (r *cappedReader) Read(p []byte) (int, error) {
	if r.b.perLayer > 0 && r.n >= r.b.perLayer {
		return 0, r.tooLarge(fmt.Sprintf("more than %s decompressed (limit per layer: scan.max_layer_bytes)", humanBytes(r.b.perLayer)))
	}
	if r.b.total > 0 && r.b.used.Load() >= r.b.total {
		return 0, r.tooLarge(fmt.Sprintf("the image's layers pass %s decompressed (limit per image: scan.max_image_bytes)", humanBytes(r.b.total)))
	}
	if r.b.perLayer > 0 {
		// Read at most one byte past the limit, so a layer of exactly the
		// limit is accepted and anything larger is refused.
		if rest := r.b.perLayer - r.n + 1; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := r.rc.Read(p)
	r.n += int64(n)
	r.b.used.Add(int64(n))
	if r.b.perLayer > 0 && r.n > r.b.perLayer {
		return 0, r.tooLarge(fmt.Sprintf("more than %s decompressed (limit per layer: scan.max_layer_bytes)", humanBytes(r.b.perLayer)))
	}
	return n, err
}

func (r *cappedReader) tooLarge(what string) error {
	d, err := r.layer.Digest()
	name := "layer"
	if err == nil {
		name = "layer " + d.String()
	}
	return fmt.Errorf("%s: %s: %w", name, what, ErrTooLarge)
}

func (r *cappedReader) Close() error { return r.rc.Close() }

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := fmt.Sprintf("%.1f", v)
	if v == float64(int64(v)) {
		s = fmt.Sprintf("%d", int64(v))
	}
	return s + " " + string("KMGTP"[exp]) + "iB"
}
