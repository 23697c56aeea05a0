package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/slipway-build/slipway/internal/testutil"
)

// tarEntry is one raw tar header (and body) of a hand-made layer; nothing
// in it is cleaned or checked, which is the point.
type tarEntry struct {
	hdr  tar.Header
	body string
}

// rawLayer writes entries as they are into a gzip-compressed layer.
func rawLayer(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// debianLayer is a Debian 12 root with glibc before DSA-5514-1
// (CVE-2023-4911, HIGH in the fixture DB): a scan that completes must
// fail the gate on it.
func debianLayer(t *testing.T) v1.Layer {
	status := "Package: libc6\nStatus: install ok installed\nPriority: optional\nSection: libs\n" +
		"Installed-Size: 1024\nMaintainer: Debian <debian@lists.debian.org>\nArchitecture: amd64\n" +
		"Source: glibc\nVersion: 2.36-9+deb12u1\nDescription: libc6 package\n\n"
	dir := func(n string) tarEntry { return tarEntry{hdr: tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755}} }
	reg := func(n, body string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: n, Typeflag: tar.TypeReg}, body: body}
	}
	return rawLayer(t, dir("etc/"), dir("var/"), dir("var/lib/"), dir("var/lib/dpkg/"),
		reg("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n"),
		reg("etc/debian_version", "12.5\n"),
		reg("var/lib/dpkg/status", status))
}

// bombLayer is a gzip stream of concatenated members that decompresses to
// one tar entry of about size bytes of zeros: a few MiB on the wire. The
// diff ID is computed by hashing, without holding the data.
func bombLayer(t *testing.T, size int64) v1.Layer {
	t.Helper()
	const chunk = 64 << 20
	n := (size + chunk - 1) / chunk
	// The tar stream after the header is all zeros: the file, its
	// padding and the two zero blocks that end the archive.
	var hb bytes.Buffer
	tw := tar.NewWriter(&hb)
	if err := tw.WriteHeader(&tar.Header{Name: "opt/bomb", Typeflag: tar.TypeReg, Mode: 0o644, Size: n*chunk - 1024, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	header := bytes.Clone(hb.Bytes())
	member := func(b []byte) []byte {
		var out bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return out.Bytes()
	}
	zeros := make([]byte, chunk)
	zmember := member(zeros)
	compressed := member(header)
	diff := sha256.New()
	diff.Write(header)
	for range n {
		compressed = append(compressed, zmember...)
		diff.Write(zeros)
	}
	diffID := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", diff.Sum(nil))}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(compressed)), nil },
		tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return &fixedDiffIDLayer{Layer: l, diffID: diffID}
}

// fixedDiffIDLayer skips ggcr's diff ID computation (a full decompression)
// for a layer whose diff ID the test knows.
type fixedDiffIDLayer struct {
	v1.Layer
	diffID v1.Hash
}

func (l *fixedDiffIDLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// pushHostileBase pushes a linux/amd64 OCI image of layers to repo:tag.
func pushHostileBase(t *testing.T, ref string, layers ...v1.Layer) {
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
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(mutate.ConfigMediaType(img, types.OCIConfigJSON), cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// treeSnapshot lists every path under root (relative), with the size and the
// content of regular files, so any write under root shows as a change.
func treeSnapshot(t *testing.T, root string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if slices.Contains(skip, rel) {
			return filepath.SkipDir
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			v += " " + string(b)
		}
		out[rel] = v
		return nil
	})
	return out
}

// TestHostileBaseLayers builds the sample app on base images whose layers
// try to escape (.. entries, absolute paths, symlinks and hard links out
// of the root, files written through them) or exhaust the scanner (a gzip
// bomb). Each run gets its own TMPDIR and HOME (with the caches) under a
// fresh directory holding a canary: after the run that directory holds
// exactly what it held plus what was written inside TMPDIR and HOME, the
// canary is unchanged, and the run ended in a scan error (exit 1) or a
// scan that gated on the base's HIGH glibc finding (exit 3): never
// success, never a crash (exit 2, a Go panic's status), never a push.
func TestHostileBaseLayers(t *testing.T) {
	reg := testutil.StartRegistry(t)
	db := fixtureDB(t)
	deb := debianLayer(t)

	type hostile struct {
		name   string
		layers func(root string) []v1.Layer
		// wantErr, when set, is what a failing run must say.
		wantErr string
	}
	reg1 := func(n, body string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: n, Typeflag: tar.TypeReg}, body: body}
	}
	cases := []hostile{
		{name: "dotdot", layers: func(root string) []v1.Layer {
			return []v1.Layer{deb, rawLayer(t,
				reg1("../../canary", "pwned"),
				reg1("../../../../../../../../../.."+root+"/canary", "pwned"),
				reg1("../pwned-dotdot", "pwned"),
				reg1("a/../../../pwned-dotdot2", "pwned"),
				reg1("../var/lib/dpkg/status", "Package: fake\n"))}
		}},
		{name: "absolute", layers: func(root string) []v1.Layer {
			return []v1.Layer{deb, rawLayer(t,
				reg1(root+"/canary", "pwned"),
				reg1(root+"/pwned-abs", "pwned"),
				tarEntry{hdr: tar.Header{Name: root + "/pwned-dir/", Typeflag: tar.TypeDir, Mode: 0o755}})}
		}},
		{name: "symlink-escape", layers: func(root string) []v1.Layer {
			return []v1.Layer{deb, rawLayer(t,
				tarEntry{hdr: tar.Header{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../../.." + root}},
				reg1("esc/canary", "pwned"),
				reg1("esc/pwned-symlink", "pwned"),
				tarEntry{hdr: tar.Header{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: root}},
				reg1("abs/pwned-symlink-abs", "pwned"),
				tarEntry{hdr: tar.Header{Name: "etc/os-release", Typeflag: tar.TypeSymlink, Linkname: root + "/canary"}})}
		}},
		{name: "hardlink-outside", layers: func(root string) []v1.Layer {
			return []v1.Layer{deb, rawLayer(t,
				tarEntry{hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: root + "/canary"}},
				tarEntry{hdr: tar.Header{Name: "hl2", Typeflag: tar.TypeLink, Linkname: "../../../../../../../../../.." + root + "/canary"}},
				reg1("hl", "pwned"),
				tarEntry{hdr: tar.Header{Name: "var/lib/dpkg/status.d/x", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}})}
		}},
		{name: "gzip-bomb", wantErr: "scan.max_layer_bytes", layers: func(string) []v1.Layer {
			// 2.5 GiB of zeros in ~2.5 MiB, over the default 2 GiB cap.
			return []v1.Layer{deb, bombLayer(t, 5<<29)}
		}},
	}

	var accepted []string
	var peak int64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			tmp, home := filepath.Join(root, "tmp"), filepath.Join(root, "home")
			for _, d := range []string{tmp, home} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, root, "canary", "canary")
			base := reg.Host + "/bases/" + c.name + ":v1"
			pushHostileBase(t, base, c.layers(root)...)

			work := filepath.Join(home, "work")
			writeFile(t, work, "slipway.yaml", fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64]
base: %s
cache_dir: %s
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
scan:
  db: {dir: %s}
  cache_dir: %s
`, reg.Host, base, filepath.Join(home, "slipway-cache"), filepath.Join(repoRoot(), "testdata", "apps", "hello"),
				db, filepath.Join(home, "scan-cache")))
			before := treeSnapshot(t, root, "tmp", "home")
			r, rss := slipwayRSS(t, work, []string{"TMPDIR=" + tmp, "HOME=" + home, "XDG_CACHE_HOME=" + filepath.Join(home, ".cache")},
				"build", "--scan", "--push")
			peak = max(peak, rss)
			t.Logf("exit %d, peak RSS %d MiB, last line: %s", r.code, rss>>20, lastLine(r.stderr))

			var bad []string
			if r.code != 1 && r.code != 3 {
				bad = append(bad, fmt.Sprintf("exit %d, want 1 (error) or 3 (gated)", r.code))
			}
			if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
				bad = append(bad, "a panic was printed")
			}
			if r.code == 3 && !strings.Contains(r.stderr, "CVE-2023-4911") {
				bad = append(bad, "gated without naming the base's CVE-2023-4911")
			}
			if c.wantErr != "" && (r.code != 1 || !strings.Contains(r.stderr, c.wantErr)) {
				bad = append(bad, fmt.Sprintf("want exit 1 naming %q", c.wantErr))
			}
			if after := treeSnapshot(t, root, "tmp", "home"); !maps.Equal(before, after) {
				bad = append(bad, fmt.Sprintf("written outside TMPDIR and HOME: before %v, after %v", before, after))
			}
			if b, _ := os.ReadFile(filepath.Join(root, "canary")); string(b) != "canary" {
				bad = append(bad, fmt.Sprintf("canary now holds %q", b))
			}
			repo, _ := name.NewRepository(reg.Host + "/team/hello")
			if tags, err := remote.List(repo); err == nil && len(tags) > 0 {
				bad = append(bad, fmt.Sprintf("pushed: tags %v", tags))
			}
			if len(bad) > 0 {
				accepted = append(accepted, c.name)
				t.Errorf("hostile base %s accepted: %s\n%s", c.name, strings.Join(bad, "; "), r)
			}
		})
	}
	t.Logf("hostile bases tried: %d, accepted: %d %v; peak RSS of slipway under hostile input: %d MiB",
		len(cases), len(accepted), accepted, peak>>20)
}
