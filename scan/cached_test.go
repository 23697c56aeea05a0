package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

type countingScanner struct {
	db    string
	scans int
}

func (c *countingScanner) Scan(_ context.Context, idx v1.ImageIndex) (*Report, error) {
	c.scans++
	d, _ := idx.Digest()
	return &Report{Subject: d.String(), Findings: []Finding{{ID: "CVE-1", Severity: SeverityHigh, Platforms: []string{"linux/amd64"}}},
		TrivyReport: json.RawMessage(`{"SchemaVersion":2,"Results":[{"Target":"linux/amd64: app","Vulnerabilities":[{"VulnerabilityID":"CVE-1","Severity":"HIGH"}]}]}`)}, nil
}

func (c *countingScanner) DBIdentity() (string, error) { return c.db, nil }

func TestCachedScanner(t *testing.T) {
	inner := &countingScanner{db: "db-1"}
	s := Cached(inner, t.TempDir())
	a, _ := random.Index(64, 1, 1)
	b, _ := random.Index(64, 1, 1)
	ctx := context.Background()
	r1, err := s.Scan(ctx, a)
	if err != nil || r1.Cached {
		t.Fatalf("first scan: %v cached=%v", err, r1.Cached)
	}
	r2, err := s.Scan(ctx, a)
	if err != nil || !r2.Cached || inner.scans != 1 || len(r2.Findings) != 1 || r2.Findings[0].ID != "CVE-1" {
		t.Fatalf("second scan of the same digest: %v cached=%v scans=%d", err, r2.Cached, inner.scans)
	}
	if !bytes.Equal(r2.TrivyReport, r1.TrivyReport) {
		t.Fatalf("cached Trivy report = %s, want %s", r2.TrivyReport, r1.TrivyReport)
	}
	if _, err := s.Scan(ctx, b); err != nil || inner.scans != 2 {
		t.Fatalf("another digest must be scanned: scans=%d", inner.scans)
	}
	inner.db = "db-2" // a new DB: scanned again
	if r, err := s.Scan(ctx, a); err != nil || r.Cached || inner.scans != 3 {
		t.Fatalf("new DB: cached=%v scans=%d", r.Cached, inner.scans)
	}
	// A scanner without a DB identity is not cached at all.
	if _, ok := Cached(plainScanner{}, t.TempDir()).(plainScanner); !ok {
		t.Fatal("a scanner without DBIdentity was wrapped")
	}
}

type plainScanner struct{}

func (plainScanner) Scan(context.Context, v1.ImageIndex) (*Report, error) { return &Report{}, nil }

// TestCachedScannerIgnoresOtherFormats: an entry that is not a current
// cacheEntry (a v2 entry was a bare Report, without the Trivy report) is
// never returned, even at the current key.
func TestCachedScannerIgnoresOtherFormats(t *testing.T) {
	inner := &countingScanner{db: "db-1"}
	dir := t.TempDir()
	s := Cached(inner, dir)
	a, _ := random.Index(64, 1, 1)
	ctx := context.Background()
	if _, err := s.Scan(ctx, a); err != nil {
		t.Fatal(err)
	}
	entries, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("cache entries = %v, %v", entries, err)
	}
	d, _ := a.Digest()
	old, _ := json.Marshal(Report{Subject: d.String(), Findings: []Finding{}})
	for _, body := range [][]byte{old, []byte(`{"version":"slipway-report-v2","report":{"subject":"` + d.String() + `"}}`)} {
		if err := os.WriteFile(entries[0], body, 0o600); err != nil {
			t.Fatal(err)
		}
		before := inner.scans
		r, err := s.Scan(ctx, a)
		if err != nil || r.Cached || inner.scans != before+1 || len(r.Findings) != 1 || r.TrivyReport == nil {
			t.Fatalf("entry %s: cached=%v scans=%d report=%+v", body, r.Cached, inner.scans, r)
		}
	}
}
