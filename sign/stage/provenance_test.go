package stage

import (
	"context"
	"debug/buildinfo"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/sign"
	"github.com/slipway-build/slipway/sign/vocab"
)

// TestProvenanceFromBuiltBinary: the Go version and flags in provenance
// are those of the binary slipway built, even when the go on PATH says
// otherwise (another toolchain, other flags).
func TestProvenanceFromBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	ctx := context.Background()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cache := t.TempDir()
	g, err := build.New(build.WithCACertificates(build.CANone), build.WithBinaryCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	var plats []v1.Platform
	for _, s := range []string{"linux/amd64", "linux/arm64"} {
		p, err := build.ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		plats = append(plats, p)
	}
	tg := build.Target{
		Name:      "worker",
		Dir:       filepath.Join(root, "testdata", "apps", "hello"),
		Main:      "./cmd/worker",
		Platforms: plats,
		Ldflags:   []string{"-X main.version=1.0.0"},
		Base:      &build.Base{Name: build.Scratch, MediaType: types.OCIImageIndex},
		Created:   time.Unix(1700000000, 0),
	}
	res, err := g.Build(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	// What go build recorded in the binaries it wrote.
	var want *buildinfo.BuildInfo
	err = filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if bi, err := buildinfo.ReadFile(p); err == nil {
			want = bi
		}
		return nil
	})
	if err != nil || want == nil {
		t.Fatalf("no binary with build info in the binary cache (%v)", err)
	}

	// A go on PATH that reports another version for anything asked.
	fake := t.TempDir()
	script := "#!/bin/sh\necho go1.0.0-fake\n"
	if err := os.WriteFile(filepath.Join(fake, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", fake+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("GOROOT", "")

	s, err := New(sign.SignerConfig{Key: testKey(t)}, WithAttestations(vocab.KindProvenance), WithTargets([]pipeline.Target{{Name: "worker", Env: []string{"GOPROXY=https://user:secret@proxy"}}}))
	if err != nil {
		t.Fatal(err)
	}
	j := pipeline.Job{Target: tg}
	p, err := s.provenance(j, res)
	if err != nil {
		t.Fatal(err)
	}
	if p.GoVersion != want.GoVersion || p.GoVersion == "go1.0.0-fake" {
		t.Errorf("provenance go version %q, the binary was built with %q", p.GoVersion, want.GoVersion)
	}
	if p.LDFlags != "-s -w -X main.version=1.0.0" {
		t.Errorf("provenance ldflags %q", p.LDFlags)
	}
	if !slices.Contains(p.BuildFlags, "-trimpath=true") {
		t.Errorf("provenance build flags %q lack -trimpath=true", p.BuildFlags)
	}
	for _, st := range want.Settings {
		if st.Key == "-ldflags" || st.Key[0] != '-' {
			continue
		}
		if !slices.Contains(p.BuildFlags, st.Key+"="+st.Value) {
			t.Errorf("provenance build flags %q lack %s=%s, which the binary records", p.BuildFlags, st.Key, st.Value)
		}
	}
	if env := p.ExternalParameters.(map[string]any)["target"].(pipeline.Target).Env; !slices.Equal(env, []string{"GOPROXY"}) {
		t.Errorf("provenance records the build environment %q, want names only", env)
	}
	// The whole stage, with the payload repository of a layout job.
	sigs, err := s.Sign(ctx, j, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	refs := sigs.Refs()
	if len(refs) == 0 {
		t.Fatal("no signature refs")
	}
	if ref, err := name.ParseReference(refs[0]); err != nil || ref.Context().String() != LocalRegistry+"/worker" {
		t.Errorf("refs %q (%v), want them under %s/worker", refs, err, LocalRegistry)
	}
}

// testKey is a signing key, made once per test binary (scrypt is slow).
func testKey(t *testing.T) *sign.PrivateKey {
	t.Helper()
	k, err := sharedKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var sharedKey = sync.OnceValues(func() (*sign.PrivateKey, error) {
	priv, _, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "slipway-stage-key-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "test.key")
	if err := os.WriteFile(path, priv, 0o600); err != nil {
		return nil, err
	}
	return sign.LoadPrivateKeyContext(context.Background(), path, func(bool) ([]byte, error) { return []byte("pw"), nil })
})
