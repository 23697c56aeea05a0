package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/slipway-build/slipway/internal/testutil"
)

// pushDebianBase pushes a linux/amd64 + linux/arm64 Debian 12 index to ref
// whose libc6 (source glibc) is at glibcVersion, and apt 2.6.1 (affected by
// CVE-2011-3374 in every release: LOW, no fix) beside it. Before
// 2.36-9+deb12u3, the fixture DB has CVE-2023-4911 (HIGH) in it.
func pushDebianBase(t *testing.T, ref, glibcVersion string, opts ...remote.Option) v1.Hash {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		status := "Package: libc6\nStatus: install ok installed\nPriority: optional\nSection: libs\n" +
			"Installed-Size: 1024\nMaintainer: Debian <debian@lists.debian.org>\nArchitecture: " + arch + "\n" +
			"Source: glibc\nVersion: " + glibcVersion + "\nDescription: libc6 package\n\n" +
			"Package: apt\nStatus: install ok installed\nPriority: important\nSection: admin\n" +
			"Installed-Size: 4096\nMaintainer: APT <deity@lists.debian.org>\nArchitecture: " + arch + "\n" +
			"Version: 2.6.1\nDescription: package manager\n\n"
		dir := func(n string) tarEntry { return tarEntry{hdr: tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755}} }
		reg := func(n, body string) tarEntry {
			return tarEntry{hdr: tar.Header{Name: n, Typeflag: tar.TypeReg}, body: body}
		}
		layer := rawLayer(t, dir("etc/"), dir("var/"), dir("var/lib/"), dir("var/lib/dpkg/"),
			reg("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n"),
			reg("etc/debian_version", "12.5\n"),
			reg("var/lib/dpkg/status", status))
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(mutate.ConfigMediaType(img, types.OCIConfigJSON), cf); err != nil {
			t.Fatal(err)
		}
		p := v1.Platform{OS: "linux", Architecture: arch}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, _ := idx.Digest()
	return d
}

// outdatedJSON is the part of `slipway outdated --format json` the test
// reads.
type outdatedJSON struct {
	RebuildDue bool `json:"rebuild_due"`
	Targets    []struct {
		Target      string `json:"target"`
		Image       string `json:"image"`
		ImageSource string `json:"image_source"`
		RebuildDue  bool   `json:"rebuild_due"`
		Error       string `json:"error"`
		Base        struct {
			Scratch        bool   `json:"scratch"`
			RecordedDigest string `json:"recorded_digest"`
			CurrentDigest  string `json:"current_digest"`
			Moved          bool   `json:"moved"`
		} `json:"base"`
		Findings []struct {
			ID        string   `json:"id"`
			PkgName   string   `json:"pkg_name"`
			Fix       string   `json:"fix"`
			Upgrade   string   `json:"upgrade"`
			Platforms []string `json:"platforms"`
		} `json:"findings"`
		ModuleUpdates []struct {
			Module, From, To string
		} `json:"module_updates"`
	} `json:"targets"`
}

func parseOutdated(t *testing.T, b []byte) outdatedJSON {
	t.Helper()
	var o outdatedJSON
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("outdated JSON: %v\n%s", err, b)
	}
	return o
}

// fixOf is "fix upgrade platforms" of the finding id in target, or "".
func (o outdatedJSON) fixOf(target, id string) string {
	var out []string
	for _, tr := range o.Targets {
		if tr.Target != target {
			continue
		}
		for _, f := range tr.Findings {
			if f.ID == id {
				out = append(out, strings.Join(slices.DeleteFunc([]string{f.Fix, f.Upgrade, strings.Join(f.Platforms, ",")},
					func(s string) bool { return s == "" }), " "))
			}
		}
	}
	return strings.Join(out, "; ")
}

func (o outdatedJSON) due(target string) bool {
	for _, tr := range o.Targets {
		if tr.Target == target {
			return tr.RebuildDue
		}
	}
	return false
}

// TestOutdated: an app pushed on base B1 is up to date (exit 0) while the
// base tag names B1, its Go module finding reported as fixed by a newer
// module (exit 3 only with --modules); once the tag names B2, whose glibc
// fixes CVE-2023-4911, a rebuild is due (exit 3) and that finding is
// listed as fixed by the rebuild; after the rebuild it is up to date again,
// and after go get of the fixed module, --modules too. A target on scratch
// says so and is never due for its base. What cannot be judged (an image
// that is not there, a stale DB) exits 1.
func TestOutdated(t *testing.T) {
	reg := testutil.StartRegistry(t)
	db := fixtureDB(t)
	dir := t.TempDir()
	baseRef := reg.Host + "/bases/debian:12"
	b1 := pushDebianBase(t, baseRef, "2.36-9+deb12u1")
	config := func(vulnApp string) {
		writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64, linux/arm64]
base: %s
targets:
  - name: vuln
    dir: %s
    main: .
  - name: hello
    dir: %s
    main: ./cmd/hello
    base: scratch
scan:
  db: {dir: %s}
  cache_dir: scan-cache
`, reg.Host, baseRef, filepath.Join(repoRoot(), "testdata", vulnApp), filepath.Join(repoRoot(), "testdata", "apps", "hello"), db))
	}
	config("vulnapp")
	// Pushed without the gate: the image holds HIGH findings on purpose.
	if r := slipway(t, dir, nil, "build", "--push"); r.code != 0 {
		t.Fatalf("build --push: %s", r)
	}

	// B1 is still what the tag names: up to date.
	r := slipway(t, dir, nil, "outdated", "--output-json", "outdated.json")
	if r.code != 0 {
		t.Fatalf("outdated on an unchanged base: exit %d, want 0\n%s", r.code, r)
	}
	o := parseOutdated(t, []byte(mustRead(t, filepath.Join(dir, "outdated.json"))))
	if len(o.Targets) != 2 || o.RebuildDue {
		t.Fatalf("unchanged base: %+v", o)
	}
	vuln := o.Targets[0]
	if vuln.ImageSource != "results" || vuln.Base.Moved || vuln.Base.RecordedDigest != b1.String() || vuln.Base.CurrentDigest != b1.String() {
		t.Fatalf("vuln: source %s, base %+v; want results, recorded = current = %s", vuln.ImageSource, vuln.Base, b1)
	}
	both := "linux/amd64,linux/arm64/v8"
	if got := o.fixOf("vuln", "CVE-2022-32149"); got != "module v0.3.8 "+both {
		t.Fatalf("CVE-2022-32149: %q, want fixed by module v0.3.8 on both platforms", got)
	}
	if got := o.fixOf("vuln", "CVE-2023-4911"); got != "none "+both {
		t.Fatalf("CVE-2023-4911 on an unchanged base: %q, want none", got)
	}
	if !o.Targets[1].Base.Scratch || o.Targets[1].RebuildDue || len(o.Targets[1].Findings) != 0 {
		t.Fatalf("hello (scratch): %+v", o.Targets[1])
	}
	for _, want := range []string{"go get golang.org/x/text@v0.3.8", "hello: on scratch", "up to date"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// A module fix is a code change: due only with --modules.
	if r := slipway(t, dir, nil, "outdated", "--modules"); r.code != 3 || !strings.Contains(lastLine(r.stderr), "golang.org/x/text@v0.3.8") {
		t.Fatalf("outdated --modules: want exit 3 naming the module\n%s", r)
	}

	// The base tag moves to B2, whose glibc is fixed.
	b2 := pushDebianBase(t, baseRef, "2.36-9+deb12u3")
	r = slipway(t, dir, nil, "outdated", "--format", "json")
	if r.code != 3 {
		t.Fatalf("outdated on a moved base: exit %d, want 3\n%s", r.code, r)
	}
	o = parseOutdated(t, []byte(r.stdout))
	if !o.RebuildDue || !o.due("vuln") || o.due("hello") {
		t.Fatalf("moved base: due %v, vuln %v, hello %v; want vuln only", o.RebuildDue, o.due("vuln"), o.due("hello"))
	}
	if b := o.Targets[0].Base; !b.Moved || b.RecordedDigest != b1.String() || b.CurrentDigest != b2.String() {
		t.Fatalf("vuln base %+v, want moved from %s to %s", b, b1, b2)
	}
	if got := o.fixOf("vuln", "CVE-2023-4911"); got != "rebuild "+both {
		t.Fatalf("CVE-2023-4911 on a moved base: %q, want fixed by the rebuild on both platforms", got)
	}
	if got := o.fixOf("vuln", "CVE-2011-3374"); got != "none "+both {
		t.Fatalf("CVE-2011-3374 (unfixed in B2 too): %q, want none", got)
	}
	if got := o.fixOf("vuln", "CVE-2022-32149"); got != "module v0.3.8 "+both {
		t.Fatalf("CVE-2022-32149 on a moved base: %q", got)
	}
	last := lastLine(r.stderr)
	if !strings.Contains(last, "rebuild due: vuln") || !strings.Contains(last, "base moved") || strings.Contains(last, "hello") {
		t.Fatalf("last line %q: want rebuild due for vuln only, base moved", last)
	}

	// Without the record of pushes: the repository and tag from the config.
	if err := os.Remove(filepath.Join(dir, "dist", "slipway-pushed.json")); err != nil {
		t.Fatal(err)
	}
	r = slipway(t, dir, nil, "outdated", "vuln", "--format", "json")
	if o := parseOutdated(t, []byte(r.stdout)); r.code != 3 || len(o.Targets) != 1 || o.Targets[0].ImageSource != "config" {
		t.Fatalf("outdated vuln from the config: want exit 3, one target, image_source config\n%s", r)
	}

	// What cannot be judged is never up to date: exit 1.
	r = slipway(t, dir, nil, "outdated", "vuln", "--image", reg.Host+"/team/nothing:latest")
	if r.code != 1 || !strings.Contains(r.stderr, "checking vuln") {
		t.Fatalf("missing image: want exit 1 naming the target\n%s", r)
	}
	if r := slipway(t, dir, []string{"SLIPWAY_SCAN_DB_MAX_AGE=1m"}, "outdated"); r.code != 1 || !strings.Contains(lastLine(r.stderr), "is stale") {
		t.Fatalf("stale DB: want exit 1, the DB named stale\n%s", r)
	}
	// Allowed, as in a scan: judged again (still due).
	if r := slipway(t, dir, []string{"SLIPWAY_SCAN_DB_MAX_AGE=1m"}, "outdated", "--allow-stale-db"); r.code != 3 {
		t.Fatalf("stale DB allowed: want exit 3\n%s", r)
	}
	if r := slipway(t, dir, nil, "outdated", "--image", reg.Host+"/team/vuln:latest"); r.code != 2 {
		t.Fatalf("bare --image with two targets: want exit 2\n%s", r)
	}

	// Rebuilt on B2: up to date, the glibc finding gone.
	if r := slipway(t, dir, nil, "build", "--push"); r.code != 0 {
		t.Fatalf("rebuild: %s", r)
	}
	r = slipway(t, dir, nil, "outdated", "--format", "json")
	o = parseOutdated(t, []byte(r.stdout))
	if r.code != 0 || o.RebuildDue || o.Targets[0].Base.RecordedDigest != b2.String() || o.fixOf("vuln", "CVE-2023-4911") != "" {
		t.Fatalf("after the rebuild: want exit 0, base recorded %s, no CVE-2023-4911\n%s", b2, r)
	}

	// go get golang.org/x/text@v0.3.8 (vulnapp-fixed): nothing left for
	// --modules either.
	config("vulnapp-fixed")
	if r := slipway(t, dir, nil, "build", "--push"); r.code != 0 {
		t.Fatalf("build --push (fixed module): %s", r)
	}
	r = slipway(t, dir, nil, "outdated", "--modules", "--format", "json")
	o = parseOutdated(t, []byte(r.stdout))
	if r.code != 0 || o.RebuildDue || o.fixOf("vuln", "CVE-2022-32149") != "" || len(o.Targets[0].ModuleUpdates) != 0 {
		t.Fatalf("fixed module: want exit 0 with --modules, no CVE-2022-32149, no module update\n%s", r)
	}
}

// TestOutdatedAuth: outdated reads the pushed image and the base with the
// credentials every command uses (Docker's config.json); without them it
// cannot judge (exit 1), and the password appears in no output.
func TestOutdatedAuth(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.WithBasicAuth("robot", "s3cret-outdated"))
	auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret-outdated"})
	db := fixtureDB(t)
	dir := t.TempDir()
	baseRef := reg.Host + "/bases/debian:12"
	pushDebianBase(t, baseRef, "2.36-9+deb12u1", auth)
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64]
base: %s
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
scan:
  db: {dir: %s}
  cache_dir: scan-cache
`, reg.Host, baseRef, filepath.Join(repoRoot(), "testdata", "apps", "hello"), db))
	creds := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{reg.Host: "robot:s3cret-outdated"}, nil)}
	if r := slipway(t, dir, creds, "build", "--push"); r.code != 0 {
		t.Fatalf("build --push: %s", r)
	}
	if r := slipway(t, dir, creds, "outdated"); r.code != 0 {
		t.Fatalf("outdated with credentials: want exit 0\n%s", r)
	}
	r := slipway(t, dir, nil, "outdated")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "UNAUTHORIZED") {
		t.Fatalf("outdated without credentials: want exit 1, unauthorized\n%s", r)
	}
	pushDebianBase(t, baseRef, "2.36-9+deb12u3", auth)
	r = slipway(t, dir, creds, "outdated", "--format", "json")
	if r.code != 3 {
		t.Fatalf("outdated with credentials, base moved: want exit 3\n%s", r)
	}
	if o := parseOutdated(t, []byte(r.stdout)); o.fixOf("hello", "CVE-2023-4911") != "rebuild linux/amd64" {
		t.Fatalf("CVE-2023-4911: %q, want fixed by the rebuild", o.fixOf("hello", "CVE-2023-4911"))
	}
	if strings.Contains(r.stdout+r.stderr, "s3cret-outdated") {
		t.Fatal("the password appears in the output")
	}
}
