package trivy

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	tsbom "github.com/aquasecurity/trivy/pkg/sbom"
	spdxjson "github.com/spdx/tools-golang/json"
)

// TestSBOMListsEachPackageOnce: a two-platform image (Debian plus the same
// Go binary) gives an SPDX document in which each Go module is one package
// annotated with both platforms, and each architecture's Debian package is
// its own package with its platform; the document reads back with
// spdx/tools-golang and Trivy's own decoder, and so does the CycloneDX BOM,
// whose components carry the same platforms.
func TestSBOMListsEachPackageOnce(t *testing.T) {
	s := newScanner(t, t.TempDir())
	bin := goBinary(t, "vulnapp")
	idx := index(t,
		image(t, amd64, layer(t, append(debianFiles("amd64", vulnerableDebianPkgs), file{name: "app/server", mode: 0o755, data: bin})...)),
		image(t, arm64, layer(t, append(debianFiles("arm64", vulnerableDebianPkgs), file{name: "app/server", mode: 0o755, data: bin})...)))
	ctx := context.Background()
	both := "linux/amd64, linux/arm64/v8"

	doc, err := s.SBOM(ctx, idx, FormatSPDXJSON)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := spdxjson.Read(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("spdx tools-golang cannot read the document: %v", err)
	}
	platforms := map[string][]string{} // name@version purl → Platforms annotations
	for _, p := range sd.Packages {
		purl := ""
		for _, r := range p.PackageExternalReferences {
			if r.RefType == "purl" {
				purl = r.Locator
			}
		}
		k := p.PackageName + "@" + p.PackageVersion + " " + purl
		if _, dup := platforms[k]; dup {
			t.Errorf("package %s listed twice", k)
		}
		platforms[k] = []string{}
		for _, a := range p.Annotations {
			if v, ok := strings.CutPrefix(a.AnnotationComment, PlatformsAnnotation+": "); ok {
				platforms[k] = append(platforms[k], v)
			}
		}
	}
	for k, want := range map[string][]string{
		"golang.org/x/text@v0.3.7 pkg:golang/golang.org/x/text@v0.3.7": {both},
		"app/server@ ": {both},
		"libc6@2.36-9+deb12u1 pkg:deb/debian/libc6@2.36-9%2Bdeb12u1?arch=amd64&distro=debian-12.5": {"linux/amd64"},
		"libc6@2.36-9+deb12u1 pkg:deb/debian/libc6@2.36-9%2Bdeb12u1?arch=arm64&distro=debian-12.5": {"linux/arm64/v8"},
	} {
		if got, ok := platforms[k]; !ok || !slices.Equal(got, want) {
			t.Errorf("%s: platforms %q (listed %v), want %q", k, got, ok, want)
		}
	}
	if t.Failed() {
		t.Logf("packages: %v", platforms)
	}
	got, err := tsbom.Decode(ctx, bytes.NewReader(doc), tsbom.FormatSPDXJSON)
	if err != nil {
		t.Fatalf("trivy cannot decode the spdx document: %v", err)
	}
	if n := countModule(got.Applications, "golang.org/x/text"); n != 1 {
		t.Errorf("trivy reads golang.org/x/text %d times from spdx, want 1", n)
	}

	doc, err = s.SBOM(ctx, idx, FormatCycloneDX)
	if err != nil {
		t.Fatal(err)
	}
	var bom cdx.BOM
	if err := json.Unmarshal(doc, &bom); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, c := range *bom.Components {
		if c.Name != "golang.org/x/text" {
			continue
		}
		found++
		if c.Properties == nil || !slices.Contains(*c.Properties, cdx.Property{Name: PlatformsProperty, Value: "linux/amd64,linux/arm64/v8"}) {
			t.Errorf("cyclonedx x/text properties %+v", c.Properties)
		}
	}
	if found != 1 {
		t.Errorf("cyclonedx lists golang.org/x/text %d times, want 1", found)
	}
	got, err = tsbom.Decode(ctx, bytes.NewReader(doc), tsbom.FormatCycloneDXJSON)
	if err != nil {
		t.Fatalf("trivy cannot decode the cyclonedx bom: %v", err)
	}
	if n := countModule(got.Applications, "golang.org/x/text"); n != 1 {
		t.Errorf("trivy reads golang.org/x/text %d times from cyclonedx, want 1", n)
	}
}

func countModule(apps []ftypes.Application, name string) int {
	n := 0
	for _, a := range apps {
		for _, p := range a.Packages {
			if p.Name == name {
				n++
			}
		}
	}
	return n
}
