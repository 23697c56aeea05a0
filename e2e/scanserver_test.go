package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slipway-build/slipway/internal/testutil"
)

const scanServerToken = "e2e-trivy-token-value"

// scanReport is what these tests read of a JSON report.
type scanReport struct {
	Findings []struct {
		ID, Severity, PkgName, InstalledVersion string
		Platforms                               []string
	}
	DB struct {
		SchemaVersion int
		UpdatedAt     string
	}
}

func readScanReport(t *testing.T, path string) scanReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r scanReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// TestScanThroughTrivyServer scans the vulnerable app (two platforms) with
// `slipway scan` locally and through a real `trivy server` with the same
// DB: the same findings and DB, the same gate (exit 3); a wrong or missing
// token, a server that is down, fail the scan (exit 1, or 2 for a missing
// variable) and never show the token.
func TestScanThroughTrivyServer(t *testing.T) {
	dir := t.TempDir()
	db := fixtureDB(t)
	srv := testutil.StartTrivyServer(t, testutil.Peer(t, "trivy"), db, scanServerToken, "")
	app := filepath.Join(repoRoot(), "testdata", "vulnapp")
	base := fmt.Sprintf(`platforms: [linux/amd64, linux/arm64]
targets:
  - name: vuln
    dir: %s
    main: .
`, app)
	writeFile(t, dir, "local.yaml", base+fmt.Sprintf("scan:\n  db: {dir: %s}\n  cache_dir: cache-local\n", db))
	writeFile(t, dir, "server.yaml", base+fmt.Sprintf(`scan:
  db: {dir: %s}
  cache_dir: cache-server
  server: %s
  server_token_env: E2E_TRIVY_TOKEN
  server_headers: {X-Slipway-Test: "1"}
  server_timeout: 30s
`, filepath.Join(dir, "no-local-db"), srv.URL))
	if r := slipway(t, dir, nil, "--config", "local.yaml", "build", "--oci-layout", "out"); r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	tok := []string{"E2E_TRIVY_TOKEN=" + scanServerToken}
	local := slipway(t, dir, nil, "--config", "local.yaml", "scan", "oci:out", "--format", "json", "--output", "local.json")
	remote := slipway(t, dir, tok, "--config", "server.yaml", "scan", "oci:out", "--format", "json", "--output", "server.json")
	if local.code != 3 || remote.code != 3 {
		t.Fatalf("scans: want exit 3 (HIGH finding) from both\nlocal: %s\nserver: %s", local, remote)
	}
	lr, sr := readScanReport(t, filepath.Join(dir, "local.json")), readScanReport(t, filepath.Join(dir, "server.json"))
	if len(lr.Findings) == 0 {
		t.Fatal("no findings locally")
	}
	lb, _ := json.Marshal(lr)
	sb, _ := json.Marshal(sr)
	if string(lb) != string(sb) {
		t.Errorf("findings or DB differ\nlocal:  %s\nserver: %s", lb, sb)
	}
	for _, r := range []result{remote} {
		if strings.Contains(r.stdout+r.stderr, scanServerToken) {
			t.Errorf("the token appears in the output:\n%s", r)
		}
	}

	// slipway run through the server: the preflight reads the server's DB.
	if r := slipway(t, dir, tok, "--config", "server.yaml", "run", "--oci-layout", "out-run"); r.code != 3 || strings.Contains(r.stderr, scanServerToken) {
		t.Errorf("run through the server: want exit 3\n%s", r)
	}

	for name, env := range map[string][]string{
		"wrong token": {"E2E_TRIVY_TOKEN=not-it"},
	} {
		r := slipway(t, dir, env, "--config", "server.yaml", "scan", "oci:out")
		if r.code != 1 || strings.Contains(r.stderr, "not-it") {
			t.Errorf("%s: want exit 1 without the token in the output\n%s", name, r)
		}
	}
	if r := slipway(t, dir, nil, "--config", "server.yaml", "scan", "oci:out"); r.code != 2 || !strings.Contains(r.stderr, "scan.server_token_env") {
		t.Errorf("token variable unset: want exit 2 naming scan.server_token_env\n%s", r)
	}
	down := strings.Replace(readFile(t, filepath.Join(dir, "server.yaml")), srv.URL, fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t)), 1)
	writeFile(t, dir, "down.yaml", down)
	if r := slipway(t, dir, tok, "--config", "down.yaml", "scan", "oci:out"); r.code != 1 {
		t.Errorf("server down: want exit 1\n%s", r)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestScanSharedRedisCache runs three slipway processes at once, each with
// its own cache dir (three runners), sharing one redis-server: all pass
// the same gate with the same findings, the layer analyses are in Redis,
// and a fourth runner analyses nothing (every layer key is there).
func TestScanSharedRedisCache(t *testing.T) {
	const password = "e2e-redis-pa55"
	rs := testutil.StartRedis(t, password)
	dir := t.TempDir()
	db := fixtureDB(t)
	app := filepath.Join(repoRoot(), "testdata", "vulnapp")
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`platforms: [linux/amd64, linux/arm64]
targets:
  - name: vuln
    dir: %s
    main: .
scan:
  db: {dir: %s}
  cache: %s
  cache_ttl: 1h
`, app, db, rs.URL))
	if r := slipway(t, dir, nil, "build", "--oci-layout", "out"); r.code != 0 {
		t.Fatalf("build: %s", r)
	}
	var wg sync.WaitGroup
	results := make([]result, 3)
	for i := range results {
		wg.Go(func() {
			// Its own scan cache dir (layer indexes) and report cache: a runner.
			results[i] = slipway(t, dir, []string{fmt.Sprintf("SLIPWAY_SCAN_CACHE_DIR=%s", filepath.Join(dir, fmt.Sprintf("runner%d", i))),
				fmt.Sprintf("SLIPWAY_CACHE_DIR=%s", filepath.Join(dir, fmt.Sprintf("cache%d", i)))},
				"scan", "oci:out", "--format", "json", "--output", fmt.Sprintf("r%d.json", i))
		})
	}
	wg.Wait()
	var first []byte
	for i, r := range results {
		if r.code != 3 || strings.Contains(r.stderr, password) {
			t.Fatalf("runner %d: want exit 3 (HIGH finding), no password in the output\n%s", i, r)
		}
		b, _ := json.Marshal(readScanReport(t, filepath.Join(dir, fmt.Sprintf("r%d.json", i))).Findings)
		if first == nil {
			first = b
		} else if string(b) != string(first) {
			t.Errorf("runner %d found other findings:\n%s\nvs\n%s", i, b, first)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: password})
	defer rc.Close()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "fanal::blob::*").Result()
	if err != nil || len(keys) < 2 {
		t.Fatalf("layer entries in redis: %v, %v", keys, err)
	}
	// A fourth runner: every layer analysis comes from Redis, so nothing
	// new is written there (the keys and their values are unchanged).
	before := map[string]string{}
	for _, k := range keys {
		before[k] = rc.Get(ctx, k).Val()
		rc.Set(ctx, k, before[k], 0) // drop the TTL: a rewrite would set it again
	}
	r := slipway(t, dir, []string{"SLIPWAY_SCAN_CACHE_DIR=" + filepath.Join(dir, "runner4"), "SLIPWAY_CACHE_DIR=" + filepath.Join(dir, "cache4")},
		"scan", "oci:out")
	if r.code != 3 {
		t.Fatalf("fourth runner: %s", r)
	}
	for _, k := range keys {
		if ttl := rc.TTL(ctx, k).Val(); ttl > 0 {
			t.Errorf("%s was written again by the fourth runner (TTL %s): the shared entry was not used", k, ttl)
		}
	}
}
