package trivy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/vulndb"
)

// pushDB starts a registry holding the fixture DB at <host>/aquasecurity/trivy-db:2.
func pushDB(t *testing.T, updatedAt time.Time) *testutil.Registry {
	t.Helper()
	reg := testutil.StartRegistry(t)
	ref, err := name.ParseReference(reg.Host + "/aquasecurity/trivy-db:2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vulndb.Push(context.Background(), fixtureDB(t, updatedAt), ref); err != nil {
		t.Fatalf("%v\n%s", err, reg.Log())
	}
	return reg
}

func TestPullFallsBackAndScans(t *testing.T) {
	reg := pushDB(t, now.Add(-2*time.Hour))

	// A proxy in front of nothing that answers 503, a 429, and a closed port.
	var hits503, hits429 atomic.Int32
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits503.Add(1)
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits429.Add(1)
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer limited.Close()
	closed := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))

	dir := t.TempDir()
	var logs bytes.Buffer
	repos := []string{
		closed + "/trivy-db",
		strings.TrimPrefix(down.URL, "http://") + "/aquasecurity/trivy-db:2",
		strings.TrimPrefix(limited.URL, "http://") + "/aquasecurity/trivy-db",
		reg.Host + "/aquasecurity/trivy-db", // tag defaults to the schema version
	}
	st, err := Pull(context.Background(), dir, repos, WithPullLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatalf("Pull: %v\nlogs:\n%s", err, logs.String())
	}
	if hits503.Load() == 0 || hits429.Load() == 0 {
		t.Errorf("failing repositories not tried: 503 hits %d, 429 hits %d", hits503.Load(), hits429.Load())
	}
	if !st.UpdatedAt.Equal(now.Add(-2*time.Hour)) || st.DownloadedAt.IsZero() || st.SchemaVersion != 2 {
		t.Errorf("status after pull = %+v", st)
	}
	if n := strings.Count(logs.String(), "trying the next"); n != 3 {
		t.Errorf("%d fallbacks logged, want 3:\n%s", n, logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "db", "trivy.db")); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("pull left temporary files: %v", entries)
	}

	r, err := newScanner(t, dir).Scan(context.Background(), debianIndex(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(findings(r, "CVE-2023-4911")) != 2 || r.DB.DownloadedAt.IsZero() {
		t.Errorf("scan with pulled db: %+v", r)
	}
}

func TestPullStopsOnNotFound(t *testing.T) {
	reg := pushDB(t, now.Add(-time.Hour))
	dir := t.TempDir()
	// An older DB already in place must survive a failed pull.
	if err := vulndb.Build(filepath.Join(repoRoot, "testdata", "vulndb"), dir, now.Add(-100*time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, err := Pull(context.Background(), dir, []string{reg.Host + "/nothing/here:2", reg.Host + "/aquasecurity/trivy-db:2"})
	if err == nil || !strings.Contains(err.Error(), "nothing/here") || strings.Contains(err.Error(), "aquasecurity/trivy-db") {
		t.Fatalf("Pull = %v, want a not-found error from the first repository only", err)
	}
	st, err := status(dir, time.Now())
	if err != nil || !st.UpdatedAt.Equal(now.Add(-100*time.Hour)) {
		t.Errorf("old db replaced or broken: %+v, %v", st, err)
	}
	if _, err := Pull(context.Background(), dir, nil); err == nil {
		t.Error("Pull without repositories succeeded")
	}
}

func TestPullAllFail(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer down.Close()
	_, err := Pull(context.Background(), t.TempDir(), []string{strings.TrimPrefix(down.URL, "http://") + "/db:2"})
	var dbe *DBError
	if err == nil || !strings.Contains(err.Error(), "every repository failed") || errors.As(err, &dbe) {
		t.Errorf("Pull = %v", err)
	}
}

func TestParseDBRepository(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000/trivy-db":        "127.0.0.1:5000/trivy-db:2",
		"127.0.0.1:5000/trivy-db:2":      "127.0.0.1:5000/trivy-db:2",
		"registry.local/aqua/trivy-db:9": "registry.local/aqua/trivy-db:9",
	} {
		ref, err := parseDBRepository(in)
		if err != nil || ref.String() != want {
			t.Errorf("parseDBRepository(%q) = %v, %v; want %s", in, ref, err, want)
		}
	}
}
