package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/publish"
)

// archiveConfig builds hello and worker, signed with key, scanned with db.
const archiveConfig = `platforms: [linux/amd64, linux/arm64]
base: scratch
targets:
  - name: hello
    main: ./cmd/hello
    tags: [latest, v1]
  - name: worker
    main: ./cmd/worker
sign:
  key: %s
  attestations: [provenance]
scan:
  db: {dir: %s}
`

// printedDigests returns the digests slipway printed, one line per target
// (PREFIX…@sha256:…), sorted.
func printedDigests(t *testing.T, stdout, prefix string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		ref, dig, ok := strings.Cut(l, "@")
		if !ok || !strings.HasPrefix(ref, prefix) {
			t.Fatalf("stdout line %q, want %s@sha256:…", l, prefix)
		}
		out = append(out, dig)
	}
	slices.Sort(out)
	return out
}

// indexAnnotations lists the annotations of every entry of a layout's
// index.json (as JSON, sorted): what the layout holds, images, signatures
// and attestations, by kind and subject.
func indexAnnotations(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range idx.Manifests {
		a, _ := json.Marshal(m.Annotations)
		out = append(out, string(a))
	}
	slices.Sort(out)
	return out
}

// TestOCIArchive (issue 14 item 10, ko#1709): build --oci-archive writes
// the layout as one tar with the digests a layout build gives, signatures
// included; push oci-archive:FILE publishes it unchanged and verifiably;
// scan oci-archive:FILE scans it; a tampered blob fails both, naming it.
func TestOCIArchive(t *testing.T) {
	reg := testutil.StartRegistry(t)
	app := copyApp(t, "hello")
	key, pub := demoKey(t, app, "pw")
	writeFile(t, app, "slipway.yaml", fmt.Sprintf(archiveConfig, key, fixtureDB(t)))
	env := []string{"COSIGN_PASSWORD=pw"}

	r := slipway(t, app, env, "build", "--sign", "--oci-layout", "out")
	if r.code != 0 {
		t.Fatalf("build --oci-layout: %s", r)
	}
	layoutDigests := printedDigests(t, r.stdout, "oci:"+filepath.Join(app, "out"))
	r = slipway(t, app, env, "build", "--sign", "--oci-archive", "images.tar")
	if r.code != 0 {
		t.Fatalf("build --oci-archive: %s", r)
	}
	archive := filepath.Join(app, "images.tar")
	if got := printedDigests(t, r.stdout, "oci-archive:"+filepath.Join(app, "images.tar")); !slices.Equal(got, layoutDigests) {
		t.Fatalf("archive digests %v, layout digests %v (same source)", got, layoutDigests)
	}
	// Signatures and attestations are in the archive as in the layout.
	dir, cleanup, err := publish.OpenArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	inLayout, inArchive := indexAnnotations(t, filepath.Join(app, "out")), indexAnnotations(t, dir)
	if !slices.Equal(inLayout, inArchive) {
		t.Fatalf("index.json entries differ:\nlayout:  %v\narchive: %v", inLayout, inArchive)
	}
	if n := strings.Count(strings.Join(inArchive, "\n"), `"dev.slipway.sign.kind"`); n == 0 {
		t.Fatalf("no signature entries in the archive: %v", inArchive)
	}

	// skopeo reads it as its own oci-archive (hello alone is tagged v1).
	if sk, err := exec.LookPath("skopeo"); err == nil {
		out, err := exec.Command(sk, "inspect", "--raw", "oci-archive:"+archive+":v1").Output()
		if err != nil {
			t.Fatalf("skopeo inspect: %v", err)
		}
		if d := fmt.Sprintf("sha256:%x", sha256.Sum256(out)); !slices.Contains(layoutDigests, d) {
			t.Fatalf("skopeo reads index %s, not one of %v", d, layoutDigests)
		}
	} else {
		t.Log("skopeo not installed: interoperability not checked")
	}

	// Unsigned, the same source gives the same archive, byte for byte.
	for _, f := range []string{"a.tar", "b.tar"} {
		if r := slipway(t, app, nil, "build", "--oci-archive", f); r.code != 0 {
			t.Fatalf("build --oci-archive %s: %s", f, r)
		}
	}
	a, _ := os.ReadFile(filepath.Join(app, "a.tar"))
	b, _ := os.ReadFile(filepath.Join(app, "b.tar"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("two archives of the same source differ (%d, %d bytes)", len(a), len(b))
	}

	// Pushed unchanged: the same digests, tags last, signatures verifiable.
	p := slipway(t, app, nil, "push", "oci-archive:images.tar", "--repository", reg.Host+"/mirror")
	if p.code != 0 {
		t.Fatalf("push oci-archive: %s", p)
	}
	var pushed []string
	for _, target := range []string{"hello", "worker"} {
		ref := pushedRef(t, p.stdout, target)
		pushed = append(pushed, ref.DigestStr())
		desc, err := remote.Head(ref.Context().Tag("latest"))
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest.String() != ref.DigestStr() {
			t.Fatalf("%s: tag latest = %s, archive digest %s", target, desc.Digest, ref.DigestStr())
		}
		if v := slipway(t, app, nil, "verify", ref.String(), "--key", pub); v.code != 0 {
			t.Fatalf("verify %s: %s", ref, v)
		}
	}
	slices.Sort(pushed)
	if !slices.Equal(pushed, layoutDigests) {
		t.Fatalf("pushed %v, built %v", pushed, layoutDigests)
	}

	// Scanned from the archive, by digest.
	s := slipway(t, app, nil, "scan", "oci-archive:images.tar@"+layoutDigests[0])
	if (s.code != 0 && s.code != 3) || !strings.Contains(s.stderr, "oci-archive:images.tar@"+layoutDigests[0]) {
		t.Fatalf("scan oci-archive: %s", s)
	}

	// A tampered blob: push and scan fail, naming it; nothing is pushed.
	bad, blob := tamperArchive(t, archive)
	p = slipway(t, app, nil, "push", "oci-archive:"+bad, "--repository", reg.Host+"/tampered")
	if p.code != 1 || !strings.Contains(p.stderr, blob) || !strings.Contains(p.stderr, "does not match its digest") {
		t.Fatalf("push of a tampered archive: want exit 1 naming %s\n%s", blob, p)
	}
	for _, target := range []string{"hello", "worker"} {
		repo, _ := name.NewRepository(reg.Host + "/tampered/" + target)
		if tags, err := remote.List(repo); err == nil && len(tags) > 0 {
			t.Fatalf("%s: tags %v after a refused push", repo, tags)
		}
	}
	s = slipway(t, app, nil, "scan", "oci-archive:"+bad+"@"+layoutDigests[0])
	if s.code != 1 || !strings.Contains(s.stderr, blob) {
		t.Fatalf("scan of a tampered archive: want exit 1 naming %s\n%s", blob, s)
	}
}

// tamperArchive copies the archive with one byte of its largest blob
// changed; it returns the copy and that blob's entry name.
func tamperArchive(t *testing.T, file string) (string, string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type entry struct {
		hdr  *tar.Header
		body []byte
	}
	var es []entry
	largest := -1
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if strings.HasPrefix(h.Name, "blobs/sha256/") && (largest < 0 || len(body) > len(es[largest].body)) {
			largest = len(es)
		}
		es = append(es, entry{h, body})
	}
	es[largest].body[len(es[largest].body)/2] ^= 0x01
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if err := tw.WriteHeader(e.hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	out := filepath.Join(filepath.Dir(file), "tampered.tar")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, es[largest].hdr.Name
}

// TestOCIArchiveUsage: --oci-archive with --push or --oci-layout is a
// usage error (exit 2), and a run that fails leaves no file.
func TestOCIArchiveUsage(t *testing.T) {
	app := copyApp(t, "hello")
	writeFile(t, app, "slipway.yaml", "platforms: [linux/amd64]\ntargets:\n  - name: hello\n    main: ./cmd/hello\n")
	for _, args := range [][]string{
		{"build", "--oci-archive", "x.tar", "--push"},
		{"build", "--oci-archive", "x.tar", "--oci-layout", "out"},
		{"run", "--oci-archive", "x.tar", "--push"},
	} {
		if r := slipway(t, app, nil, args...); r.code != 2 || !strings.Contains(r.stderr, "--oci-archive") {
			t.Errorf("%s: want exit 2 naming --oci-archive\n%s", strings.Join(args, " "), r)
		}
	}
	writeFile(t, app, "cmd/hello/broken.go", "package main\n\nfunc broken() { undefined() }\n")
	if r := slipway(t, app, nil, "build", "--oci-archive", "x.tar"); r.code != 1 {
		t.Errorf("build of broken source: want exit 1\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(app, "x.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("x.tar after failed runs: %v", err)
	}
}
