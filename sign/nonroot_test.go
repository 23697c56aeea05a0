package sign

import (
	"context"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestRunsAsRoot(t *testing.T) {
	for user, root := range map[string]bool{
		"": true, "root": true, "0": true, "0:0": true, "00": true, "root:staff": true, " 0 ": true,
		"65532": false, "65532:65532": false, "nonroot": false, "1000:0": false, "app": false,
	} {
		if got := RunsAsRoot(user); got != root {
			t.Errorf("RunsAsRoot(%q) = %v, want %v", user, got, root)
		}
	}
}

// userIndex is a two-platform index whose platforms run as users.
func userIndex(t *testing.T, users ...string) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, u := range users {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf.Config.User = u
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: []string{"amd64", "arm64"}[i]}}})
	}
	return idx
}

// TestVerifyRequireNonRoot: every platform of the index must run as a
// non-root user.
func TestVerifyRequireNonRoot(t *testing.T) {
	repo := mustRepo(t, memRegistry(t)+"/app")
	key := testKey(t, "cosign")
	for _, tc := range []struct {
		name  string
		users []string
		deny  string
	}{
		{"non-root", []string{"65532:65532", "nonroot"}, ""},
		{"one platform root", []string{"65532", "0:0"}, "linux/arm64 runs as root"},
		{"default user", []string{"", "65532"}, "linux/amd64 runs as root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := userIndex(t, tc.users...)
			d := pushIndex(t, repo, "v1", idx)
			signWrite(t, bundleSigner(t, key), idx, repo)
			_, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}, RequireNonRoot: true})
			var pe *PolicyError
			switch {
			case tc.deny == "" && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.deny != "" && (!errors.As(err, &pe) || !strings.Contains(err.Error(), tc.deny)):
				t.Fatalf("Verify = %v, want a denial with %q", err, tc.deny)
			}
			if _, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}}); err != nil {
				t.Fatalf("without the rule: %v", err)
			}
		})
	}
}
