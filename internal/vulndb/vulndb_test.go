package vulndb

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/aquasecurity/trivy-db/pkg/types"
	bolt "go.etcd.io/bbolt"
)

func TestBuild(t *testing.T) {
	out := t.TempDir()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := Build(filepath.Join("..", "..", "testdata", "vulndb"), out, at); err != nil {
		t.Fatal(err)
	}
	// Trivy's cache layout: <dir>/db/trivy.db next to metadata.json.
	if _, err := os.Stat(filepath.Join(out, "db", "trivy.db")); err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.NewClient(filepath.Join(out, "db")).Get()
	if err != nil {
		t.Fatal(err)
	}
	if meta.Version != db.SchemaVersion || !meta.UpdatedAt.Equal(at) || !meta.NextUpdate.Equal(at.Add(NextUpdateInterval)) {
		t.Errorf("metadata = %+v", meta)
	}

	if err := db.Init(filepath.Join(out, "db"), db.WithBoltOptions(&bolt.Options{ReadOnly: true})); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := db.Config{}
	advs, err := c.GetAdvisories("go::", "golang.org/x/text")
	if err != nil {
		t.Fatal(err)
	}
	if len(advs) != 1 || advs[0].VulnerabilityID != "CVE-2022-32149" || advs[0].PatchedVersions[0] != "0.3.8" {
		t.Errorf("x/text advisories = %+v", advs)
	}
	advs, err = c.GetAdvisories("debian 12", "glibc")
	if err != nil || len(advs) != 1 || advs[0].FixedVersion != "2.36-9+deb12u3" {
		t.Errorf("glibc advisories = %+v, %v", advs, err)
	}
	v, err := c.GetVulnerability("CVE-2024-24790")
	if err != nil || v.VendorSeverity["nvd"] != types.SeverityCritical {
		t.Errorf("CVE-2024-24790 = %+v, %v", v, err)
	}
	// The fixtures must carry the severities the acceptance tests rely on.
	want := map[types.Severity]bool{}
	for _, id := range []string{"CVE-2022-32149", "CVE-2024-45337", "CVE-2024-24790", "CVE-2011-3374", "CVE-2023-4911"} {
		v, err := c.GetVulnerability(id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		for _, s := range v.VendorSeverity {
			want[s] = true
		}
	}
	for _, s := range []types.Severity{types.SeverityLow, types.SeverityHigh, types.SeverityCritical} {
		if !want[s] {
			t.Errorf("no advisory of severity %s", s)
		}
	}
}

func TestBuildNoFixtures(t *testing.T) {
	if err := Build(t.TempDir(), t.TempDir(), time.Now()); err == nil {
		t.Error("Build of an empty fixtures dir succeeded")
	}
}
