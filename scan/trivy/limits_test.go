package trivy

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/slipway-build/slipway/scan"
)

// zeros is a file of n zero bytes: it compresses to almost nothing.
func zeros(name string, n int) file { return file{name: name, data: make([]byte, n)} }

func TestDecompressLimitPerLayer(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	img := image(t, amd64,
		layer(t, debianFiles("amd64", vulnerableDebianPkgs)...),
		layer(t, zeros("opt/bomb", 32<<20)))

	// Under the default limits the image scans and the findings gate.
	r, err := newScanner(t, db).ScanImage(context.Background(), img)
	if err != nil {
		t.Fatalf("default limits: %v", err)
	}
	if !hasFinding(r.Findings, "CVE-2023-4911") {
		t.Fatalf("default limits: CVE-2023-4911 not found: %+v", r.Findings)
	}

	_, err = newScanner(t, db, WithMaxDecompressed(16<<20, 0)).ScanImage(context.Background(), img)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("16 MiB per layer: err = %v, want ErrTooLarge", err)
	}
	if !strings.Contains(err.Error(), "more than 16 MiB decompressed (limit per layer: scan.max_layer_bytes)") {
		t.Fatalf("error does not name the limit: %v", err)
	}
	// The SBOM path reads layers through the same limits.
	if _, err := newScanner(t, db, WithMaxDecompressed(16<<20, 0)).SBOM(context.Background(), index(t, img), "cyclonedx"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("SBOM with 16 MiB per layer: err = %v, want ErrTooLarge", err)
	}
}

func TestDecompressLimitPerImage(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	img := image(t, amd64,
		layer(t, zeros("a", 10<<20)), layer(t, zeros("b", 10<<20)), layer(t, zeros("c", 10<<20)))
	_, err := newScanner(t, db, WithMaxDecompressed(16<<20, 24<<20), WithParallel(1)).ScanImage(context.Background(), img)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "limit per image: scan.max_image_bytes") {
		t.Fatalf("24 MiB per image: err = %v, want ErrTooLarge naming the image limit", err)
	}
	// Exactly at the per-layer limit is accepted.
	exact := image(t, amd64, layer(t, zeros("a", 1<<20)))
	l, _ := exact.Layers()
	rc, _ := l[0].Uncompressed()
	size, _ := io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := newScanner(t, db, WithMaxDecompressed(size, size)).ScanImage(context.Background(), exact); err != nil {
		t.Fatalf("layer of exactly the limit (%d bytes): %v", size, err)
	}
	if _, err := newScanner(t, db, WithMaxDecompressed(size-1, 0)).ScanImage(context.Background(), exact); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("layer one byte over the limit: err = %v", err)
	}
}

func TestWithMaxDecompressedRejectsNegative(t *testing.T) {
	if _, err := New(WithMaxDecompressed(-1, 0)); err == nil {
		t.Fatal("negative limit accepted")
	}
}

// Trivy tells compressed from uncompressed layers by a struct field name;
// the capped wrapper must answer as the layer it wraps.
func TestCappedLayerKeepsCompressionKind(t *testing.T) {
	isCompressed := func(l v1.Layer) bool {
		_, uncompressed := reflect.TypeOf(l).Elem().FieldByName("UncompressedLayer")
		return !uncompressed
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	b := newBudget(0, 0)
	uncompressed := static.NewLayer([]byte("not a tar"), types.OCIUncompressedLayer)
	for _, l := range []v1.Layer{ls[0], uncompressed, layer(t, zeros("x", 1))} {
		if got, want := isCompressed(b.wrap(l)), isCompressed(l); got != want {
			t.Errorf("%T: wrapped isCompressed = %v, want %v", l, got, want)
		}
	}
}

func hasFinding(fs []scan.Finding, id string) bool {
	for _, f := range fs {
		if f.ID == id {
			return true
		}
	}
	return false
}

// localLayer is a layer built in this process: Compressed must not be
// read to scan it.
type localLayer struct{ v1.Layer }

func (localLayer) LocallyBuilt() {}

func (localLayer) Compressed() (io.ReadCloser, error) {
	return nil, errors.New("a locally built layer was read compressed")
}

// TestLocallyBuiltLayerReadAsIs: build's layers (LocallyBuilt) are read
// from their uncompressed bytes, with the limits still applied; any other
// layer goes through the verified copy of its compressed blob.
func TestLocallyBuiltLayerReadAsIs(t *testing.T) {
	l, err := random.Layer(1<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(must(l.Uncompressed()))
	if err != nil {
		t.Fatal(err)
	}
	b := newBudget(1<<20, 0)
	rc, err := b.wrap(localLayer{l}).Uncompressed()
	if err != nil {
		t.Fatalf("locally built layer: %v", err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != string(want) {
		t.Fatalf("locally built layer read %d bytes (%v), want its %d uncompressed bytes", len(got), err, len(want))
	}
	small, err := newBudget(100, 0).wrap(localLayer{l}).Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(small); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a locally built layer passed the per-layer limit: %v", err)
	}
	// A layer from elsewhere is verified from its compressed bytes.
	if _, err := b.wrap(&brokenCompressed{l}).Uncompressed(); err == nil {
		t.Error("a layer that is not locally built was not read through its compressed blob")
	}
}

type brokenCompressed struct{ v1.Layer }

func (*brokenCompressed) Compressed() (io.ReadCloser, error) {
	return nil, errors.New("compressed read")
}

func must(rc io.ReadCloser, err error) io.ReadCloser {
	if err != nil {
		panic(err)
	}
	return rc
}
