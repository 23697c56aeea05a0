package build

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestReproducibleLayer(t *testing.T) {
	mtime := time.Unix(1700000000, 0)
	files := []layerFile{
		fileFromBytes([]byte("b"), "/app/zeta", 0o755),
		fileFromBytes([]byte("a"), "/app/alpha", 0o644),
	}
	l1, err := reproducibleLayer(files, mtime, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := reproducibleLayer([]layerFile{files[1], files[0]}, mtime.In(time.FixedZone("x", 3600)), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l1.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Fatalf("same files, different digests: %s %s", d1, d2)
	}
	rc, err := l1.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(mtime) {
			t.Errorf("%s: uid=%d gid=%d mtime=%v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
	}
	if got := strings.Join(names, ","); got != "app/,app/alpha,app/zeta" {
		t.Fatalf("entries = %s", got)
	}
}

// TestBuildTwiceSameDigest: two builds of the same source, with separate
// binary caches (so both compile), give one index digest, and so do the
// platform manifests.
func TestBuildTwiceSameDigest(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	var digests []string
	for i := 0; i < 2; i++ {
		g, err := New(WithBinaryCache(t.TempDir()), WithCACertificates(CANone))
		if err != nil {
			t.Fatal(err)
		}
		tg := workerTarget(t, "linux/amd64", "linux/arm64")
		tg.Base, _ = ResolveBase(context.Background(), Scratch)
		res, err := g.Build(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		im, err := res.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		d := res.Digest.String()
		for _, m := range im.Manifests {
			d += " " + m.Digest.String()
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds of the same source:\n%s\n%s", digests[0], digests[1])
	}
}
