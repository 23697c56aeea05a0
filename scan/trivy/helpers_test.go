package trivy

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/slipway-build/slipway/internal/vulndb"
)

// now is the fixed clock of the tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

var repoRoot = filepath.Join("..", "..")

// fixtureDB builds the fixture DB updated at updatedAt into a temp dir.
func fixtureDB(t testing.TB, updatedAt time.Time) string {
	t.Helper()
	dir := t.TempDir()
	if err := vulndb.Build(filepath.Join(repoRoot, "testdata", "vulndb"), dir, updatedAt); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newScanner(t testing.TB, dbDir string, opts ...Option) *Scanner {
	t.Helper()
	s, err := New(append([]Option{WithDBDir(dbDir), WithCacheDir(t.TempDir()), WithClock(clock)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type file struct {
	name string
	mode int64
	data []byte
}

// layer builds an uncompressed tar layer of files (directories implied).
func layer(t testing.TB, files ...file) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	for _, f := range files {
		for d := filepath.Dir(f.name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var ds []string
	for d := range dirs {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	mt := time.Unix(0, 0)
	for _, d := range ds {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(f.data)), ModTime: mt}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type dpkg struct{ name, source, version string }

// debianFiles are the files of a Debian 12 base for arch with pkgs in the
// dpkg status file.
func debianFiles(arch string, pkgs []dpkg) []file {
	var st strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&st, "Package: %s\nStatus: install ok installed\nPriority: optional\nSection: libs\n"+
			"Installed-Size: 1024\nMaintainer: Debian <debian@lists.debian.org>\nArchitecture: %s\n", p.name, arch)
		if p.source != "" {
			fmt.Fprintf(&st, "Source: %s\n", p.source)
		}
		fmt.Fprintf(&st, "Version: %s\nDescription: %s package\n\n", p.version, p.name)
	}
	return []file{
		{name: "etc/os-release", data: []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n" +
			"VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n")},
		{name: "etc/debian_version", data: []byte("12.5\n")},
		{name: "var/lib/dpkg/status", data: []byte(st.String())},
	}
}

// vulnerableDebianPkgs holds glibc before DSA-5514-1 (CVE-2023-4911, HIGH)
// and apt (CVE-2011-3374, LOW, unfixed).
var vulnerableDebianPkgs = []dpkg{
	{"apt", "", "2.6.1"},
	{"base-files", "", "12.4+deb12u5"},
	{"libc-bin", "glibc", "2.36-9+deb12u1"},
	{"libc6", "glibc", "2.36-9+deb12u1"},
}

func image(t testing.TB, platform v1.Platform, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Created = v1.Time{Time: time.Unix(0, 0)}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func index(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// debianIndex is a two-platform Debian 12 image with vulnerable glibc and apt.
func debianIndex(t testing.TB) v1.ImageIndex {
	return index(t,
		image(t, amd64, layer(t, debianFiles("amd64", vulnerableDebianPkgs)...)),
		image(t, arm64, layer(t, debianFiles("arm64", vulnerableDebianPkgs)...)))
}

var (
	buildMu sync.Mutex
	built   = map[string][]byte{}
)

// goBinary builds testdata/<app> as slipway builds release binaries
// (CGO_ENABLED=0 -trimpath -ldflags=-s -w), offline from its vendor dir.
func goBinary(t testing.TB, app string) []byte {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if b, ok := built[app]; ok {
		return b
	}
	b := goBinaryLdflags(t, app, "")
	built[app] = b
	return b
}

// goBinaryLdflags builds testdata/<app> as goBinary does, with extra
// ldflags, uncached.
func goBinaryLdflags(t testing.TB, app, ldflags string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "server")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w "+ldflags, "-o", out, ".")
	cmd.Dir = filepath.Join(repoRoot, "testdata", app)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH,
		"GOFLAGS=-mod=vendor", "GOPROXY=off", "GOTOOLCHAIN=local", "GOEXPERIMENT=", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", app, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withGoVersion rewrites the Go version recorded in a binary's build info
// (same length only), to test stdlib advisories against a toolchain that
// is not installed.
func withGoVersion(t testing.TB, bin []byte, version string) []byte {
	t.Helper()
	magic := []byte("\xff Go buildinf:")
	i := bytes.Index(bin, magic)
	if i < 0 || bin[i+15]&2 == 0 {
		t.Fatal("no Go 1.18+ build info in binary")
	}
	p := i + 32
	n, w := binary.Uvarint(bin[p:])
	old := string(bin[p+w : p+w+int(n)])
	if len(old) != len(version) {
		t.Fatalf("build info version %q: cannot replace with %q", old, version)
	}
	out := bytes.Clone(bin)
	copy(out[p+w:], version)
	return out
}
