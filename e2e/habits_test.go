package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Issue 14 items 1–3: an image on scratch built from testdata/apps/habits
// runs under runc and finds its kodata file (KO_DATA_PATH), a file from
// files:, the Europe/Berlin zone, its user (nonroot from /etc/passwd) and a
// writable /tmp; its health check command runs too. A changed kodata file
// changes the image digest although the binary comes from the cache.
func TestHabitsRunOnScratch(t *testing.T) {
	app := copyApp(t, "habits")
	img, digest := buildHabits(t, app)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	hc := cf.Config.Healthcheck
	if hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/app/habits", "-health"}) || hc.Interval != 30*time.Second || hc.Timeout != 5*time.Second || hc.StartPeriod != 2*time.Second || hc.Retries != 3 {
		t.Fatalf("healthcheck = %+v", hc)
	}
	if !slices.Contains(cf.Config.Env, "KO_DATA_PATH=/var/run/ko") {
		t.Fatalf("env = %v, want KO_DATA_PATH=/var/run/ko", cf.Config.Env)
	}

	out := runToExit(t, img, nil)
	for _, want := range []string{
		"ok kodata: greetings from kodata",
		"ok files: zone=Europe/Berlin",
		"ok zone: Europe/Berlin CEST 7200",
		"ok user: nonroot 65532 nonroot /home/nonroot",
		"ok tmp: /tmp",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out := runToExit(t, img, hc.Test[1:]); !strings.Contains(out, "healthy") {
		t.Errorf("health check output = %q", out)
	}

	// A changed kodata file, the same source: the binary comes from the
	// cache, its layer is unchanged, and the image digest changes.
	layers := layerDigests(t, img)
	writeFile(t, app, "cmd/habits/kodata/greeting.txt", "changed\n")
	img2, digest2 := buildHabits(t, app)
	if digest2 == digest {
		t.Fatalf("kodata changed, image digest %s unchanged", digest)
	}
	layers2 := layerDigests(t, img2)
	if len(layers2) != len(layers) || layers2[len(layers2)-1] != layers[len(layers)-1] {
		t.Fatalf("binary layer changed with kodata only:\n%v\n%v", layers, layers2)
	}
	if out := runToExit(t, img2, nil); !strings.Contains(out, "ok kodata: changed") {
		t.Errorf("rebuilt image output:\n%s", out)
	}
}

// buildHabits builds the habits app at dir into a layout and returns its
// linux/amd64 image and the index digest.
func buildHabits(t *testing.T, dir string) (v1.Image, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oci")
	r := slipway(t, dir, nil, "build", "--oci-layout", out)
	if r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["dev.slipway.target"] != "habits" {
			continue
		}
		idx, err := root.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		img, err := idx.Image(pm.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		return img, d.Digest.String()
	}
	t.Fatalf("no habits index in %s", out)
	return nil, ""
}

// runToExit unpacks img with umoci and runs it with runc (args, when set,
// replacing the process arguments) until it exits; it fails the test
// unless the exit status is 0, and returns the output.
func runToExit(t *testing.T, img v1.Image, args []string) string {
	t.Helper()
	bundle := runcBundle(t, img, func(proc, _ map[string]any) {
		if args != nil {
			proc["args"] = args
		}
	})
	id := fmt.Sprintf("slipway-habits-%d", time.Now().UnixNano())
	t.Cleanup(func() { exec.Command("runc", "delete", "--force", id).Run() })
	cmd := exec.Command("runc", "run", "--bundle", bundle, id)
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() {
		select {
		case <-done:
		default:
			exec.Command("runc", "kill", id, "KILL").Run()
		}
	})
	out, err := cmd.CombinedOutput()
	close(done)
	timer.Stop()
	if err != nil {
		t.Fatalf("runc run %v: %v\n%s", args, err, out)
	}
	return string(out)
}
