package build

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// Issue 14 item 4: "all" is every linux platform of the base, as ko's
// --platform=all: attestation entries, other OSes and duplicates skipped;
// an error on scratch.
func TestLinuxPlatforms(t *testing.T) {
	var adds []mutate.IndexAddendum
	for _, p := range []struct {
		plat v1.Platform
		ann  map[string]string
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, nil},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, nil},
		{v1.Platform{OS: "unknown", Architecture: "unknown"}, map[string]string{"vnd.docker.reference.type": "attestation-manifest"}},
		{v1.Platform{OS: "linux", Architecture: "s390x"}, map[string]string{"vnd.docker.reference.type": "attestation-manifest"}},
		{v1.Platform{OS: "windows", Architecture: "amd64"}, nil},
		{v1.Platform{OS: "linux", Architecture: "amd64"}, nil},
	} {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		plat := p.plat
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat, Annotations: p.ann}})
	}
	dir := filepath.Join(t.TempDir(), "base")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(mutate.AppendManifests(empty.Index, adds...)); err != nil {
		t.Fatal(err)
	}
	b, err := ResolveBase(context.Background(), LayoutPrefix+dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.LinuxPlatforms()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, PlatformString(p))
	}
	if want := []string{"linux/amd64", "linux/arm64/v8"}; !slices.Equal(names, want) {
		t.Errorf("platforms %v, want %v", names, want)
	}
	scratch, err := ResolveBase(context.Background(), Scratch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scratch.LinuxPlatforms(); err == nil || !strings.Contains(err.Error(), "scratch") {
		t.Errorf("scratch: err = %v", err)
	}
}
