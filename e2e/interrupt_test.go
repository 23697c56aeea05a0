package e2e

import (
	"bytes"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/slipway-build/slipway/internal/testutil"
)

// TestInterruptMidPush sends SIGINT to `slipway run --push` while blobs are
// uploading (the proxy holds the first PATCH until the signal is sent):
// slipway exits non-zero, no tag points at an incomplete image, and the
// next run completes.
func TestInterruptMidPush(t *testing.T) {
	reg := testutil.StartRegistry(t)
	proxy := testutil.StartProxy(t, reg.URL())
	dir := t.TempDir()
	db := fixtureDB(t)
	key, pub := demoKey(t, dir, "pw")
	cfg := helloOnly(pipelineConfig(proxy.Host+"/team", db, key, pub, "", "abort"))
	writeFile(t, dir, "slipway.yaml", cfg)

	uploading := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	proxy.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		first := false
		once.Do(func() { first = true })
		if first {
			close(uploading)
			select {
			case <-release:
			case <-time.After(30 * time.Second):
			}
		}
		return false
	})
	cmd := exec.Command(slipwayBin, "run", "--push")
	cmd.Dir = dir
	cmd.Env = append(baseEnv(t), "COSIGN_PASSWORD=pw")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-uploading:
	case <-time.After(120 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("no upload started\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	close(release)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("interrupted run exited 0\n%s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("slipway did not stop within 30s of SIGINT\n%s", stderr.String())
	}
	proxy.SetIntercept(nil)

	// No tag may point at an image with missing blobs.
	repo, _ := name.NewRepository(reg.Host + "/team/hello")
	tags, _ := remote.List(repo)
	for _, tag := range tags {
		idx, err := remote.Index(repo.Tag(tag))
		if err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
		if err := validate.Index(idx); err != nil {
			t.Fatalf("tag %s points at an invalid image: %v", tag, err)
		}
	}
	r := slipway(t, dir, []string{"COSIGN_PASSWORD=pw"}, "run", "--push")
	if r.code != 0 {
		t.Fatalf("run after the interrupted one: %s", r)
	}
	if v := slipway(t, dir, nil, "verify", proxy.Host+"/team/hello:latest"); v.code != 0 {
		t.Fatalf("verify: %s", v)
	}
}
