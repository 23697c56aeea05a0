package trivy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/slipway-build/slipway/scan"
)

// entry is one tar entry of a rawLayer: a regular file (data), a
// directory (name ending in /), a symlink or a hard link.
type entry struct {
	name     string
	data     []byte
	mode     int64
	symlink  string
	hardlink string
}

// rawLayer builds a layer of exactly these entries, in this order.
func rawLayer(t testing.TB, es ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: time.Unix(0, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.symlink != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.symlink
		case e.hardlink != "":
			h.Typeflag, h.Linkname = tar.TypeLink, e.hardlink
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
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

func debianEntries(prefix string) []entry {
	var out []entry
	for _, f := range debianFiles("amd64", vulnerableDebianPkgs) {
		name := f.name
		if name == "var/lib/dpkg/status" {
			name = prefix
		}
		out = append(out, entry{name: name, data: f.data})
	}
	return out
}

// scanFindings scans img with a fresh scanner and returns the ids found
// with the paths of Go binary findings.
func scanImage(t *testing.T, s *Scanner, img v1.Image) *scan.Report {
	t.Helper()
	r, err := s.ScanImage(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The gate judges the filesystem runc would see: content reached through
// hard links and symlinked package-database directories is scanned, and
// whiteouts and opaque directories still hide what they hide.
func TestScanFinalFilesystem(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	vuln := goBinary(t, "vulnapp")
	fixed := goBinary(t, "vulnapp-fixed")
	cases := []struct {
		name   string
		layers [][]entry
		want   string // finding id, "" for none
		path   string // PkgPath of the Go finding
	}{
		{
			name: "hard link keeps a binary whose first name is whited out",
			layers: [][]entry{
				{{name: "app/"}, {name: "app/vuln", data: vuln, mode: 0o755}, {name: "app/keep", hardlink: "app/vuln"}},
				{{name: "app/.wh.vuln"}},
			},
			want: "CVE-2022-32149", path: "app/keep",
		},
		{
			name: "hard link across layers to a file whited out later",
			layers: [][]entry{
				{{name: "app/"}, {name: "app/vuln", data: vuln, mode: 0o755}},
				{{name: "srv/"}, {name: "srv/keep", hardlink: "/app/vuln"}},
				{{name: "app/.wh.vuln"}},
			},
			want: "CVE-2022-32149", path: "srv/keep",
		},
		{
			name: "dpkg status is a hard link",
			layers: [][]entry{
				append(debianEntries("opt/dpkg-status"), entry{name: "var/lib/dpkg/status", hardlink: "opt/dpkg-status"}),
			},
			want: "CVE-2023-4911",
		},
		{
			name: "/var/lib/dpkg is a symlink to a directory holding status",
			layers: [][]entry{
				append(debianEntries("opt/dpkg/status"), entry{name: "var/lib/dpkg", symlink: "../../opt/dpkg"}),
			},
			want: "CVE-2023-4911",
		},
		{
			name: "/var/lib/dpkg replaced by a symlink in a later layer",
			layers: [][]entry{
				append(debianEntries("var/lib/dpkg/status"), entry{name: "srv/old-status", data: []byte("garbage")}),
				{{name: "var/lib/.wh.dpkg"}, {name: "var/lib/dpkg", symlink: "/opt/db"}, {name: "opt/db/status", data: debianStatus()}},
			},
			want: "CVE-2023-4911",
		},
		{
			name: "whiteout hides a binary",
			layers: [][]entry{
				{{name: "app/"}, {name: "app/vuln", data: vuln, mode: 0o755}, {name: "app/ok", data: fixed, mode: 0o755}},
				{{name: "app/.wh.vuln"}},
			},
		},
		{
			name: "opaque directory hides a binary",
			layers: [][]entry{
				{{name: "app/"}, {name: "app/vuln", data: vuln, mode: 0o755}},
				{{name: "app/"}, {name: "app/.wh..wh..opq"}, {name: "app/ok", data: fixed, mode: 0o755}},
			},
		},
		{
			name: "whiteout of a hard link's target layer content under an opaque dir",
			layers: [][]entry{
				{{name: "app/"}, {name: "app/vuln", data: vuln, mode: 0o755}, {name: "app/keep", hardlink: "app/vuln"}},
				{{name: "app/"}, {name: "app/.wh..wh..opq"}, {name: "app/ok", data: fixed, mode: 0o755}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ls []v1.Layer
			for _, es := range tc.layers {
				ls = append(ls, rawLayer(t, es...))
			}
			r := scanImage(t, newScanner(t, db), image(t, amd64, ls...))
			got := findings(r, tc.want)
			if tc.want == "" {
				for _, f := range r.Findings {
					if f.Severity.Rank() >= scan.SeverityHigh.Rank() {
						t.Fatalf("unexpected finding %+v", f)
					}
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("%s not found; findings: %+v", tc.want, r.Findings)
			}
			if tc.path != "" && got[0].PkgPath != tc.path {
				t.Errorf("PkgPath = %q, want %q", got[0].PkgPath, tc.path)
			}
		})
	}
}

func debianStatus() []byte {
	for _, f := range debianFiles("amd64", vulnerableDebianPkgs) {
		if f.name == "var/lib/dpkg/status" {
			return f.data
		}
	}
	return nil
}

// claimDiffIDs returns img with its config claiming other diff_ids.
func claimDiffIDs(t *testing.T, img v1.Image, ids []v1.Hash) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = ids
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffIDs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.RootFS.DiffIDs
}

// The layer cache is keyed on what slipway verified, not on the diff_id a
// config claims: a vulnerable layer claiming a clean layer's diff_id is
// read, and fails verification, instead of being served the clean
// layer's cached analysis; the reverse cannot plant a finding.
func TestCacheDoesNotTrustClaimedDiffID(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	cacheDir := t.TempDir()
	s := newScanner(t, db, WithCacheDir(cacheDir))
	clean := image(t, amd64, layer(t, file{name: "app/server", mode: 0o755, data: goBinary(t, "vulnapp-fixed")}))
	vuln := image(t, amd64, layer(t, file{name: "app/server", mode: 0o755, data: goBinary(t, "vulnapp")}))

	if r := scanImage(t, s, clean); len(r.Findings) != 0 {
		t.Fatalf("clean image: %+v", r.Findings)
	}
	if r := scanImage(t, s, vuln); len(findings(r, "CVE-2022-32149")) != 1 {
		t.Fatalf("vulnerable image: %+v", r.Findings)
	}

	for _, tc := range []struct {
		name  string
		img   v1.Image
		claim []v1.Hash
	}{
		{"vulnerable layer claims the clean diff_id", vuln, diffIDs(t, clean)},
		{"clean layer claims the vulnerable diff_id", clean, diffIDs(t, vuln)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			liar := claimDiffIDs(t, tc.img, tc.claim)
			r, err := s.ScanImage(context.Background(), liar)
			var mm *DiffIDMismatchError
			if !errors.As(err, &mm) {
				t.Fatalf("ScanImage = %+v, %v; want a diff_id mismatch", r, err)
			}
			ls, _ := tc.img.Layers()
			d, _ := ls[0].Digest()
			if mm.Layer != d || !strings.Contains(err.Error(), d.String()) || mm.Claimed != tc.claim[0] {
				t.Errorf("error names layer %s claimed %s, want %s claimed %s: %v", mm.Layer, mm.Claimed, d, tc.claim[0], err)
			}
			// Scanned again (now with every index cached that could be), it
			// still fails.
			if _, err := s.ScanImage(context.Background(), liar); !errors.As(err, &mm) {
				t.Fatalf("second scan: %v", err)
			}
		})
	}
	// The honest images still scan as before.
	if r := scanImage(t, s, clean); len(r.Findings) != 0 {
		t.Fatalf("clean image after: %+v", r.Findings)
	}
}
