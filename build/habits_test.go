package build

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// tarEntry is what the tests check of a layer entry.
type tarEntry struct {
	mode     int64
	uid, gid int
	dir      bool
	data     string
}

func layerEntries(t *testing.T, l v1.Layer) (map[string]tarEntry, []string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	m := map[string]tarEntry{}
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return m, names
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		m[h.Name] = tarEntry{mode: h.Mode, uid: h.Uid, gid: h.Gid, dir: h.Typeflag == tar.TypeDir, data: string(b)}
	}
}

// TestReproducibleLayerUnchanged pins the digest of a files-only layer as
// it was before directory entries existed: images that get no new entries
// (non-scratch bases, no static files) keep their digests.
func TestReproducibleLayerUnchanged(t *testing.T) {
	l, err := reproducibleLayer([]layerFile{
		fileFromBytes([]byte("binary"), "/app/hello", 0o755),
		fileFromBytes([]byte("ca"), "/etc/ssl/certs/ca-certificates.crt", 0o644),
	}, time.Unix(1700000000, 0), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:2c4455073ac88173da6ef8a1681708dcc2cd38cf2e513714145eba4850cee782"; d.String() != want {
		t.Fatalf("digest = %s, want %s (the digest before directory entries)", d, want)
	}
}

func TestReproducibleLayerDirEntries(t *testing.T) {
	l, err := reproducibleLayer([]layerFile{
		fileFromBytes([]byte("x"), "/home/nonroot/.keep", 0o644),
		dirEntry("/tmp", 0o1777, 0, 0),
		dirEntry("/home/nonroot", 0o700, nonrootID, nonrootID),
	}, time.Unix(0, 0), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	m, names := layerEntries(t, l)
	if got := strings.Join(names, ","); got != "home/,home/nonroot/,home/nonroot/.keep,tmp/" {
		t.Fatalf("entries = %s", got)
	}
	if e := m["tmp/"]; !e.dir || e.mode != 0o1777 || e.uid != 0 {
		t.Errorf("tmp/ = %+v, want a root directory with mode 1777", e)
	}
	if e := m["home/nonroot/"]; !e.dir || e.mode != 0o700 || e.uid != nonrootID || e.gid != nonrootID {
		t.Errorf("home/nonroot/ = %+v", e)
	}
	if e := m["home/"]; !e.dir || e.mode != 0o755 || e.uid != 0 {
		t.Errorf("implied home/ = %+v", e)
	}
	if _, err := reproducibleLayer([]layerFile{dirEntry("/tmp", 0o1777, 0, 0), dirEntry("/tmp", 0o755, 0, 0)}, time.Unix(0, 0), types.OCILayer); err == nil {
		t.Error("an entry given twice was accepted")
	}
}

func toolchainZip(t *testing.T) func() ([]byte, error) {
	t.Helper()
	gobin, err := findGo()
	if err != nil {
		t.Skip(err)
	}
	return func() ([]byte, error) { return toolchainZoneinfo(context.Background(), gobin) }
}

func TestScratchLayerFiles(t *testing.T) {
	if files, err := scratchLayerFiles(ScratchFiles{}, nil); err != nil || len(files) != 0 {
		t.Fatalf("no files chosen: %d files, %v", len(files), err)
	}
	files, err := scratchLayerFiles(ScratchFiles{Zoneinfo: true, Passwd: true, Tmp: true}, toolchainZip(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := reproducibleLayer(files, time.Unix(0, 0), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	if size, err := l.Size(); err == nil {
		t.Logf("scratch runtime layer: %d entries, %d bytes compressed", len(files), size)
	}
	m, names := layerEntries(t, l)
	if !slices.IsSorted(names) {
		t.Error("entries are not sorted")
	}
	berlin, ok := m["usr/share/zoneinfo/Europe/Berlin"]
	if !ok {
		t.Fatal("no usr/share/zoneinfo/Europe/Berlin")
	}
	loc, err := time.LoadLocationFromTZData("Europe/Berlin", []byte(berlin.data))
	if err != nil {
		t.Fatalf("Europe/Berlin: %v", err)
	}
	if _, off := time.Date(2026, 7, 1, 12, 0, 0, 0, loc).Zone(); off != 2*3600 {
		t.Errorf("Europe/Berlin summer offset = %d", off)
	}
	if e := m["tmp/"]; !e.dir || e.mode != 0o1777 {
		t.Errorf("tmp/ = %+v", e)
	}
	if !strings.Contains(m["etc/passwd"].data, "nonroot:x:65532:65532:") || !strings.HasPrefix(m["etc/passwd"].data, "root:x:0:0:") {
		t.Errorf("etc/passwd = %q", m["etc/passwd"].data)
	}
	if !strings.Contains(m["etc/group"].data, "nonroot:x:65532:") {
		t.Errorf("etc/group = %q", m["etc/group"].data)
	}
	if e := m["home/nonroot/"]; e.uid != nonrootID || e.mode != 0o700 {
		t.Errorf("home/nonroot/ = %+v", e)
	}
	// One choice at a time.
	only, err := scratchLayerFiles(ScratchFiles{Tmp: true}, func() ([]byte, error) { return nil, errors.New("not read") })
	if err != nil || len(only) != 1 || only[0].path != "/tmp" {
		t.Fatalf("tmp only: %v %v", only, err)
	}
}

func TestZoneinfoFilesRefusesBadZip(t *testing.T) {
	if _, err := zoneinfoFiles([]byte("not a zip")); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := scratchLayerFiles(ScratchFiles{Zoneinfo: true}, func() ([]byte, error) { return nil, errors.New("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("unreadable zoneinfo: %v", err)
	}
}

// habitsTree makes a module dir with a main package whose kodata holds a
// file, a subdirectory and an in-tree symlink.
func habitsTree(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("cmd/app/main.go", "package main\nfunc main() {}\n", 0o600)
	write("cmd/app/kodata/greeting.txt", "hello", 0o600)
	write("cmd/app/kodata/sub/run.sh", "#!/bin/true", 0o700)
	write("conf/app.yaml", "a: 1", 0o600)
	write("conf/extra/b.yaml", "b: 2", 0o600)
	if err := os.Symlink("greeting.txt", filepath.Join(dir, "cmd/app/kodata/link.txt")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStaticFiles(t *testing.T) {
	dir := habitsTree(t)
	tg := Target{Name: "app", Dir: dir, Main: "./cmd/app", Files: []File{
		{Src: filepath.Join(dir, "conf/app.yaml"), Dst: "/etc/app/app.yaml", Mode: 0o640},
		{Src: filepath.Join(dir, "conf/extra"), Dst: "/etc/app/extra"},
	}}
	files, err := staticFiles(tg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := reproducibleLayer(files, time.Unix(0, 0), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	m, names := layerEntries(t, l)
	want := []string{"etc/", "etc/app/", "etc/app/app.yaml", "etc/app/extra/", "etc/app/extra/b.yaml",
		"var/", "var/run/", "var/run/ko/", "var/run/ko/greeting.txt", "var/run/ko/link.txt", "var/run/ko/sub/", "var/run/ko/sub/run.sh"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries:\n%v\nwant\n%v", names, want)
	}
	for name, e := range map[string]tarEntry{
		"var/run/ko/greeting.txt": {mode: 0o644, data: "hello"},
		"var/run/ko/link.txt":     {mode: 0o644, data: "hello"},
		"var/run/ko/sub/run.sh":   {mode: 0o755, data: "#!/bin/true"},
		"etc/app/app.yaml":        {mode: 0o640, data: "a: 1"},
		"etc/app/extra/b.yaml":    {mode: 0o644, data: "b: 2"},
		"var/run/ko/":             {mode: 0o755, dir: true},
	} {
		if got := m[name]; got != e {
			t.Errorf("%s = %+v, want %+v", name, got, e)
		}
	}

	// Files under /tmp and /home/nonroot keep those directories' modes
	// and owners (a layer's directory entry replaces the one below).
	files, err = staticFiles(Target{Name: "app", Dir: dir, Main: "./conf", Files: []File{
		{Src: filepath.Join(dir, "conf/app.yaml"), Dst: "/tmp/seed/app.yaml"},
		{Src: filepath.Join(dir, "conf/app.yaml"), Dst: "/home/nonroot/.app.yaml"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, err = reproducibleLayer(files, time.Unix(0, 0), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	m, _ = layerEntries(t, l)
	if e := m["tmp/"]; e.mode != 0o1777 || e.uid != 0 {
		t.Errorf("tmp/ = %+v, want mode 1777", e)
	}
	if e := m["tmp/seed/"]; e.mode != 0o755 {
		t.Errorf("tmp/seed/ = %+v", e)
	}
	if e := m["home/nonroot/"]; e.mode != 0o700 || e.uid != nonrootID {
		t.Errorf("home/nonroot/ = %+v", e)
	}

	// No kodata, no files: nothing.
	if files, err := staticFiles(Target{Name: "app", Dir: dir, Main: "./conf"}); err != nil || len(files) != 0 {
		t.Errorf("no kodata: %d files, %v", len(files), err)
	}
}

func TestStaticFilesRefused(t *testing.T) {
	dir := habitsTree(t)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	escape := filepath.Join(dir, "cmd/app/kodata/escape")
	if err := os.Symlink(outside, escape); err != nil {
		t.Fatal(err)
	}
	tg := Target{Name: "app", Dir: dir, Main: "./cmd/app"}
	if _, err := staticFiles(tg); err == nil || !strings.Contains(err.Error(), escape) {
		t.Errorf("symlink leaving kodata: err = %v, want one naming %s", err, escape)
	}
	if err := os.Remove(escape); err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(dir, "cmd/app/kodata/up")
	if err := os.Symlink("../main.go", up); err != nil {
		t.Fatal(err)
	}
	if _, err := staticFiles(tg); err == nil || !strings.Contains(err.Error(), up) {
		t.Errorf("relative symlink leaving kodata: err = %v", err)
	}
	os.Remove(up)
	for _, c := range []struct {
		f    File
		want string
	}{
		{File{Src: filepath.Join(dir, "conf/app.yaml"), Dst: "/app/app"}, "replace the binary"},
		{File{Src: filepath.Join(dir, "conf/app.yaml"), Dst: "etc/x"}, "absolute"},
		{File{Src: filepath.Join(dir, "conf/app.yaml"), Dst: "/"}, "absolute"},
		{File{Src: filepath.Join(dir, "missing"), Dst: "/x"}, "missing"},
		{File{Src: "conf/app.yaml", Dst: "/x"}, "absolute"},
	} {
		tg.Files = []File{c.f}
		if _, err := staticFiles(tg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.f, err, c.want)
		}
	}
}

// TestAppImageHabits assembles a scratch image from a fixed "binary" with
// the scratch files, kodata and a healthcheck: the config carries them,
// the same inputs give the same digest, and a changed kodata file changes
// the digest although the binary is the same (as from the binary cache).
func TestAppImageHabits(t *testing.T) {
	dir := habitsTree(t)
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("\x7fELF fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	tg := Target{Name: "app", Dir: dir, Main: "./cmd/app", Created: time.Unix(1700000000, 0)}
	tg.Image.Scratch = ScratchFiles{Zoneinfo: true, Passwd: true, Tmp: true}
	tg.Image.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", "/app/app", "-health"}, Interval: 30 * time.Second, Timeout: 5 * time.Second, StartPeriod: time.Second, Retries: 3}
	p := v1.Platform{OS: "linux", Architecture: "amd64"}
	assemble := func() (v1.Image, v1.Hash) {
		t.Helper()
		scratch, err := scratchLayerFiles(tg.Image.Scratch, toolchainZip(t))
		if err != nil {
			t.Fatal(err)
		}
		static, err := staticFiles(tg)
		if err != nil {
			t.Fatal(err)
		}
		extra, err := newExtraLayers(tg, scratch, static, true, true)
		if err != nil {
			t.Fatal(err)
		}
		img, err := appImage(tg, empty.Image, "", p, bin, nil, extra, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return img, d
	}
	img, d1 := assemble()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if hc := cf.Config.Healthcheck; hc == nil || !slices.Equal(hc.Test, tg.Image.Healthcheck.Test) || hc.Interval != 30*time.Second || hc.Retries != 3 {
		t.Errorf("healthcheck = %+v", hc)
	}
	if !slices.Contains(cf.Config.Env, "KO_DATA_PATH=/var/run/ko") {
		t.Errorf("env = %v, want KO_DATA_PATH", cf.Config.Env)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 {
		t.Fatalf("%d layers, want scratch files, static files, binary", len(layers))
	}
	if _, d2 := assemble(); d2 != d1 {
		t.Fatalf("same inputs, digests %s and %s", d1, d2)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd/app/kodata/greeting.txt"), []byte("hallo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, d3 := assemble(); d3 == d1 {
		t.Fatal("a changed kodata file left the image digest unchanged")
	}
	// KO_DATA_PATH set by the user wins.
	tg.Image.Env = map[string]string{"KO_DATA_PATH": "/data"}
	img, _ = assemble()
	cf, _ = img.ConfigFile()
	if !slices.Contains(cf.Config.Env, "KO_DATA_PATH=/data") || slices.Contains(cf.Config.Env, "KO_DATA_PATH=/var/run/ko") {
		t.Errorf("env = %v", cf.Config.Env)
	}
}
