package sign

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

// TestLayoutRoundTrip: signatures written to an OCI layout read back
// unchanged and publish later with WriteRemote, verifiable as usual; writing
// the layout twice replaces its entries.
func TestLayoutRoundTrip(t *testing.T) {
	repo := mustRepo(t, realRegistry(t)+"/app")
	idx := testIndex(t)
	key, pub := testKey(t, "cosign"), testPub(t, "cosign")
	s, err := NewKeyed(key)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := s.Sign(context.Background(), idx, repo,
		WithSBOM(SBOM{Format: vocab.SBOMCycloneDX, Document: []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}`)}))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := layout.Write(dir, idx); err != nil { // what publish would have written
		t.Fatal(err)
	}
	for range 2 {
		if err := WriteLayout(dir, sigs); err != nil {
			t.Fatal(err)
		}
	}
	lidx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := lidx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	// layout.Write made idx's own manifest list index.json; WriteLayout adds
	// one image per subject and kind (each platform's .sig, the index's .sig
	// and .att), however often it runs.
	orig, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(im.Manifests), len(orig.Manifests)+countEntries(sigs); got != want {
		t.Errorf("layout index.json has %d manifests, want %d", got, want)
	}

	back, err := readLayout(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if back.Repository() != repo || back.PublicKey().ID() != pub.ID() || back.Digest() != sigs.Digest() {
		t.Fatalf("read back repo %s key %s digest %s", back.Repository(), back.PublicKey().ID(), back.Digest())
	}
	subs, got := sigs.Subjects(), back.Subjects()
	if len(subs) != len(got) {
		t.Fatalf("read back %d subjects, want %d", len(got), len(subs))
	}
	for i, o := range subs {
		if o.Digest != got[i].Digest || len(o.Signatures) != len(got[i].Signatures) || len(o.Attestations) != len(got[i].Attestations) ||
			len(o.Bundles) != len(got[i].Bundles) || o.MediaType != got[i].MediaType || o.Size != got[i].Size {
			t.Fatalf("subject %d: %+v, want %+v", i, got[i], o)
		}
		for j := range o.Signatures {
			a, _ := o.Signatures[j].Digest()
			b, _ := got[i].Signatures[j].Digest()
			sa, _ := o.Signatures[j].Base64Signature()
			sb, _ := got[i].Signatures[j].Base64Signature()
			if a != b || sa != sb {
				t.Errorf("subject %d signature %d changed", i, j)
			}
		}
	}

	pushIndex(t, repo, "v1", idx)
	for range 2 { // publishing twice adds nothing
		if err := WriteRemote(context.Background(), repo, back, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Verify(context.Background(), repo.Tag("v1"), Policy{Keys: []*PublicKey{pub}, RequireAttestations: []string{vocab.KindSBOM}})
	if err != nil {
		t.Fatalf("Verify after publishing from layout: %v", err)
	}
	// Both formats: the legacy .sig/.att and the bundle referrers, each
	// once however often the layout is published.
	if len(v.Signatures) != 2 || len(v.Attestations) != 2 || v.Attestations[0].PredicateType != PredicateCycloneDX || v.Attestations[1].PredicateType != PredicateCycloneDX {
		t.Errorf("verdict %+v", v)
	}
}

func countEntries(s *Signatures) int {
	n := 0
	for _, sub := range s.Subjects() {
		if len(sub.Signatures) > 0 {
			n++
		}
		if len(sub.Attestations) > 0 {
			n++
		}
		n += len(sub.Bundles)
	}
	return n
}

func TestReadLayoutRejectsTampering(t *testing.T) {
	repo := mustRepo(t, "registry.example/app")
	s, err := NewKeyed(testKey(t, "cosign"))
	if err != nil {
		t.Fatal(err)
	}
	idx := testIndex(t)
	sigs, err := s.Sign(context.Background(), idx, repo, WithVulnReport(testReport(t, idx, testProvenance().FinishedOn, scan.SeverityLow)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteLayout(dir, sigs); err != nil {
		t.Fatal(err)
	}
	// Corrupt one small blob (a signature payload) in place.
	var corrupted bool
	err = filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || corrupted {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("cosign container image signature")) {
			corrupted = true
			return os.WriteFile(p, bytes.Replace(b, []byte("cosign"), []byte("COSIGN"), 1), 0o644)
		}
		return nil
	})
	if err != nil || !corrupted {
		t.Fatalf("corrupting layout: %v (found payload: %v)", err, corrupted)
	}
	if _, err := readLayout(dir, nil); err == nil {
		t.Error("readLayout accepted a corrupted signature blob")
	}
	if _, err := readLayout(t.TempDir(), nil); err == nil {
		t.Error("readLayout of an empty directory succeeded")
	}
}

// grepDir reports whether any file under dir contains s.
func grepDir(dir, s string) (bool, error) {
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(b, []byte(s))
		return nil
	})
	return found, err
}

// TestReadLayoutFor: a layout holding the signatures of two indexes (two
// targets) gives back each index's own, and none for an unsigned digest.
func TestReadLayoutFor(t *testing.T) {
	repo := mustRepo(t, "registry.example.com/app")
	key := testKey(t, "cosign")
	s, err := NewKeyed(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var digests []string
	for range 2 {
		idx := testIndex(t)
		sigs, err := s.Sign(context.Background(), idx, repo)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteLayout(dir, sigs); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, sigs.Digest().String())
	}
	if _, err := readLayout(dir, nil); err == nil {
		t.Fatal("readLayout accepted the signatures of two indexes")
	}
	for _, d := range digests {
		h, _ := v1.NewHash(d)
		got, err := ReadLayoutFor(dir, h)
		if err != nil || got == nil || got.Digest().String() != d {
			t.Fatalf("ReadLayoutFor(%s) = %v, %v", d, got, err)
		}
	}
	none, err := ReadLayoutFor(dir, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)})
	if err != nil || none != nil {
		t.Fatalf("unsigned digest: %v, %v", none, err)
	}
}
