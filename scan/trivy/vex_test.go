package trivy

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-build/slipway/scan"
)

func vexFile(name string) string { return filepath.Join("testdata", "vex", name) }

// TestVEXSuppressesOnlyTheStatedProduct: a not_affected statement (OpenVEX
// or CSAF) for the vulnerable package's purl suppresses the finding, with
// status and justification, and the gate passes; statements for another
// product or version, or with status affected, suppress nothing.
func TestVEXSuppressesOnlyTheStatedProduct(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	bin := goBinary(t, "vulnapp")
	idx := index(t,
		image(t, amd64, layer(t, file{name: "app/server", mode: 0o755, data: bin})),
		image(t, arm64, layer(t, file{name: "app/server", mode: 0o755, data: bin})))
	for _, c := range []struct {
		file          string
		suppressed    bool
		status, justi string
	}{
		{"openvex-text.json", true, "not_affected", "vulnerable_code_not_in_execute_path"},
		{"csaf-text.json", true, "not_affected", "vulnerable_code_not_in_execute_path"},
		{"openvex-other-product.json", false, "", ""},
		{"openvex-affected.json", false, "", ""},
	} {
		t.Run(c.file, func(t *testing.T) {
			s := newScanner(t, db, WithVEX(vexFile(c.file)))
			r, err := s.Scan(context.Background(), idx)
			if err != nil {
				t.Fatal(err)
			}
			got := findings(r, "CVE-2022-32149")
			if len(got) != 1 {
				t.Fatalf("findings %+v", r.Findings)
			}
			f := got[0]
			gerr := scan.Gate(r, scan.Policy{Ignore: &scan.IgnoreFile{}})
			if !c.suppressed {
				if f.Suppressed != nil {
					t.Fatalf("suppressed by %+v, want not", f.Suppressed)
				}
				var v *scan.PolicyViolation
				if !errors.As(gerr, &v) {
					t.Fatalf("gate = %v, want a violation", gerr)
				}
				return
			}
			want := scan.Suppression{Rule: "vex:" + vexFile(c.file), Statement: c.status + ": " + c.justi,
				Kind: scan.SuppressedByVEX, Status: c.status, Justification: c.justi}
			if f.Suppressed == nil || *f.Suppressed != want {
				t.Fatalf("suppression = %+v, want %+v", f.Suppressed, want)
			}
			// The gate (with an ignore file, which must keep VEX marks) passes.
			if gerr != nil {
				t.Fatalf("gate = %v, want pass", gerr)
			}
			if len(f.Platforms) != 2 {
				t.Errorf("platforms %v", f.Platforms)
			}
		})
	}
}

// TestVEXInvalidFailsClosed: an unreadable or undecodable VEX document is a
// *VEXError naming the file, at New.
func TestVEXInvalidFailsClosed(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	for _, name := range []string{"missing.json", "truncated.json", "not-vex.json"} {
		_, err := New(WithDBDir(db), WithCacheDir(t.TempDir()), WithVEX(vexFile("openvex-text.json"), vexFile(name)))
		var ve *VEXError
		if !errors.As(err, &ve) || ve.Path != vexFile(name) || ve.Index != 1 {
			t.Errorf("%s: err = %v, want a VEXError naming it", name, err)
		}
	}
}

// TestVEXIdentity: the report cache keys on the VEX documents.
func TestVEXIdentity(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	a := newScanner(t, db, WithVEX(vexFile("openvex-text.json")))
	b := newScanner(t, db, WithVEX(vexFile("csaf-text.json")))
	none := newScanner(t, db)
	if a.ConfigIdentity() == b.ConfigIdentity() || a.ConfigIdentity() == "" || none.ConfigIdentity() != "" {
		t.Errorf("identities %q %q %q", a.ConfigIdentity(), b.ConfigIdentity(), none.ConfigIdentity())
	}
}
