package publish

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A manifest gate holds back manifest PUTs, not blob uploads: an image
// written with a gated context has its blobs in the registry before the
// gate opens and its manifest only after. A gate that fails writes no
// manifest and fails the write with its error.
func TestManifestGate(t *testing.T) {
	c := newCountingRegistry(t)
	repo, err := name.NewRepository(c.host + "/team/sig")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	open := make(chan struct{})
	var waited atomic.Int32
	gated := WithManifestGate(ctx, func(ctx context.Context) error {
		waited.Add(1)
		select {
		case <-open:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	opts, err := r.RepositoryOptions(gated, repo)
	if err != nil {
		t.Fatal(err)
	}
	c.take()
	done := make(chan error, 1)
	go func() { done <- remote.Write(repo.Tag("sig"), img, opts...) }()
	// The blobs go up while the gate is closed; the manifest waits.
	deadline := time.Now().Add(30 * time.Second)
	for waited.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the manifest PUT never reached the gate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	reqs := c.take()
	if n := count(reqs, "PUT /v2/team/sig/blobs/"); n != 3 { // 2 layers + config
		t.Fatalf("%d blob uploads finished before the gate opened, want 3: %v", n, reqs)
	}
	if n := count(reqs, "PUT /v2/team/sig/manifests/"); n != 0 {
		t.Fatalf("a manifest was written through a closed gate: %v", reqs)
	}
	close(open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, err := remote.Head(repo.Tag("sig")); err != nil || got.Digest != d {
		t.Fatalf("after the gate opened: %v, %v", got, err)
	}

	// A failing gate: nothing named, the gate's error returned.
	boom := errors.New("image write failed")
	failing := WithManifestGate(ctx, func(context.Context) error { return boom })
	opts, err = r.RepositoryOptions(failing, repo)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("other"), other, opts...); !errors.Is(err, boom) {
		t.Fatalf("write through a failing gate = %v, want its error", err)
	}
	if _, err := remote.Head(repo.Tag("other")); err == nil {
		t.Fatal("a failing gate let the tag be written")
	}
	// Without a gate, the same session writes at once.
	opts, err = r.RepositoryOptions(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("other"), other, opts...); err != nil {
		t.Fatal(err)
	}
}
