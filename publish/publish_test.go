package publish

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestRegistryWriteThenTag(t *testing.T) {
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer s.Close()
	repo, err := name.NewRepository(strings.TrimPrefix(s.URL, "http://") + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(256, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.CheckPush(ctx, repo); err != nil {
		t.Fatalf("CheckPush: %v", err)
	}
	ref, err := r.WriteIndex(ctx, repo, idx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if ref.DigestStr() != want.String() {
		t.Fatalf("wrote %s, want %s", ref, want)
	}
	// Written by digest only: no tag yet.
	if tags, _ := remote.List(repo); len(tags) != 0 {
		t.Fatalf("tags before Tag: %v", tags)
	}
	if err := r.Tag(ctx, ref, []string{"latest", "v1"}); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"latest", "v1"} {
		got, err := remote.Index(repo.Tag(tag))
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != want {
			t.Fatalf("%s -> %s", tag, d)
		}
		if err := validate.Index(got); err != nil {
			t.Fatal(err)
		}
	}
	// Tagging a digest the registry lacks fails before any tag moves.
	missing := repo.Digest("sha256:" + strings.Repeat("0", 64))
	if err := r.Tag(ctx, missing, []string{"latest"}); err == nil {
		t.Fatal("tagging a missing digest succeeded")
	}
}

func TestLayoutEntries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	l, err := NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := random.Index(128, 1, 2)
	b, _ := random.Index(128, 1, 1)
	if _, err := l.WriteIndex("alpha", a, []string{"latest", "v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteIndex("beta", b, nil); err != nil {
		t.Fatal(err)
	}
	// Rewriting alpha replaces its entries.
	a2, _ := random.Index(128, 1, 2)
	if _, err := l.WriteIndex("alpha", a2, []string{"latest"}); err != nil {
		t.Fatal(err)
	}
	l2, err := NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	es, err := l2.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Target != "alpha" || es[1].Target != "beta" {
		t.Fatalf("entries = %+v", es)
	}
	d2, _ := a2.Digest()
	if es[0].Digest != d2 || strings.Join(es[0].Tags, ",") != "latest" || len(es[1].Tags) != 0 {
		t.Fatalf("alpha = %s %v, beta tags %v", es[0].Digest, es[0].Tags, es[1].Tags)
	}
	if err := validate.Index(es[0].Index); err != nil {
		t.Fatal(err)
	}
}

// TestManifestPutRaceRetried: distribution answers a manifest PUT with
// MANIFEST_BLOB_UNKNOWN while a concurrent client rewrites the same blobs;
// the write is retried and succeeds. A persistent answer still fails.
func TestManifestPutRaceRetried(t *testing.T) {
	for _, c := range []struct {
		name    string
		refuse  int
		wantErr bool
	}{{"transient", 2, false}, {"persistent", 100, true}} {
		t.Run(c.name, func(t *testing.T) {
			reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
			var refused atomic.Int32
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && int(refused.Load()) < c.refuse {
					refused.Add(1)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					io.WriteString(w, `{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}`)
					return
				}
				reg.ServeHTTP(w, r)
			}))
			defer s.Close()
			repo, _ := name.NewRepository(strings.TrimPrefix(s.URL, "http://") + "/team/app")
			idx, _ := random.Index(64, 1, 1)
			r, err := NewRegistry(withRaceBackoff(time.Millisecond, 2*time.Millisecond, 5*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.WriteIndex(context.Background(), repo, idx)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error: %v (refused %d)", err, c.wantErr, refused.Load())
			}
			if c.wantErr && !strings.Contains(err.Error(), "MANIFEST_BLOB_UNKNOWN") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestNewRegistryRejectsNil(t *testing.T) {
	if _, err := NewRegistry(WithKeychain(nil)); err == nil {
		t.Error("nil keychain accepted")
	}
	if _, err := NewRegistry(WithTransport(nil)); err == nil {
		t.Error("nil transport accepted")
	}
}

// TestTagRefusesOtherBytes: a registry that serves, for the digest just
// written, a manifest with other bytes gets no tag.
func TestTagRefusesOtherBytes(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var swap atomic.Bool
	other, _ := random.Index(64, 1, 1)
	otherRaw, _ := other.RawManifest()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if swap.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/sha256:") {
			w.Header().Set("Content-Type", string(types.OCIImageIndex))
			w.Write(otherRaw)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer s.Close()
	repo, _ := name.NewRepository(strings.TrimPrefix(s.URL, "http://") + "/team/app")
	idx, _ := random.Index(64, 1, 1)
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := r.WriteIndex(context.Background(), repo, idx)
	if err != nil {
		t.Fatal(err)
	}
	swap.Store(true)
	if err := r.Tag(context.Background(), ref, []string{"latest"}); err == nil {
		t.Fatal("tagged a digest the registry serves other bytes for")
	}
	swap.Store(false)
	if tags, _ := remote.List(repo); len(tags) != 0 {
		t.Fatalf("tags: %v", tags)
	}
}
