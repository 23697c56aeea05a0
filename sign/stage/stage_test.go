package stage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/sign"
	"github.com/slipway-build/slipway/sign/vocab"
)

// countingSBOMs makes a new document on every call.
type countingSBOMs struct{ calls int }

func (c *countingSBOMs) SBOM(_ context.Context, _ v1.ImageIndex, format string) ([]byte, error) {
	c.calls++
	return []byte(`{"format":"` + format + `","call":` + string(rune('0'+c.calls)) + `}`), nil
}

// TestSBOMCache: an unchanged index keeps its SBOM (same bytes, made once);
// the cache directory is private; a corrupt entry is made again.
func TestSBOMCache(t *testing.T) {
	idx, err := random.Index(256, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	res := &build.Result{Index: idx, Digest: h}
	dir := filepath.Join(t.TempDir(), "sbom")
	m := &countingSBOMs{}
	s, err := New(sign.SignerConfig{Key: testKey(t)}, WithAttestations(vocab.KindSBOM), WithSBOMs(m, vocab.SBOMCycloneDX), WithSBOMCache(dir, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.sbom(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.sbom(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	if m.calls != 1 || string(first) != string(again) {
		t.Errorf("made %d SBOMs, %s then %s; want one, reused", m.calls, first, again)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir %v (%v), want 0700", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !strings.Contains(entries[0].Name(), ".cyclonedx.v1.json") {
		t.Fatalf("cache holds %v", entries)
	}
	if err := os.WriteFile(filepath.Join(dir, entries[0].Name()), []byte("{truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.sbom(context.Background(), res); err != nil || m.calls != 2 {
		t.Errorf("a corrupt cache entry was used (%d calls, %v)", m.calls, err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"unknown kind", []Option{WithAttestations("slsa")}, "unknown attestation"},
		{"sbom without maker", []Option{WithAttestations(vocab.KindSBOM)}, "SBOM maker"},
		{"unknown format", []Option{WithAttestations(vocab.KindSBOM), WithSBOMs(&countingSBOMs{}, "cyclonedx-json")}, "unknown SBOM format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(sign.SignerConfig{Key: testKey(t)}, tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := New(sign.SignerConfig{}); err == nil {
		t.Error("New with neither key nor keyless succeeded")
	}
}
