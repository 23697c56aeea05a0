package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 14 item 9: slipway cache prune removes slipway's cache entries,
// least recently used first, and nothing else under cache_dir.
func TestCachePrune(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	now := time.Now()
	write := func(rel string, size int, age time.Duration) string {
		t.Helper()
		p := filepath.Join(cache, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldBin := write("build/aa/old", 1000, 30*24*time.Hour)
	newBin := write("build/bb/new", 1000, time.Hour)
	report := write("reports/r.json", 500, 2*time.Hour)
	peer := write("peers/kyverno-v1/kyverno", 5000, 90*24*time.Hour)
	if err := os.WriteFile(filepath.Join(dir, "slipway.yaml"), []byte("cache_dir: cache\nscan: {cache_dir: cache/scan}\ntargets: [{name: a}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runIn(t, dir, nil, "cache", "prune", "--max-size", "1200B")
	if code != 0 || !strings.Contains(out, "removed 2 files") {
		t.Fatalf("prune: exit %d\n%s\n%s", code, out, errOut)
	}
	for p, want := range map[string]bool{oldBin: false, report: false, newBin: true, peer: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: present = %v, want %v", p, err == nil, want)
		}
	}
	if _, errOut, code := runIn(t, dir, nil, "cache", "prune", "--max-size", "lots"); code != 2 || !strings.Contains(errOut, "--max-size") {
		t.Errorf("bad size: exit %d, %s", code, errOut)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "2GiB": 2 << 30, "500MB": 500e6, "5 KiB": 5 << 10, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

// Issue 14 item 9: every build bounds the caches by itself
// (cache_max_bytes, default 5 GiB): under the bound nothing goes; over it,
// slipway's entries go, least recently used first, and other files under
// cache_dir stay.
func TestBuildBoundsCaches(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":       "module example.com/app\n\ngo 1.22\n",
		"main.go":      "package main\n\nfunc main() {}\n",
		"slipway.yaml": "cache_dir: cache\nca_certificates: none\nscan: {cache_dir: cache/scan}\ntargets: [{name: app}]\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cache := filepath.Join(dir, "cache")
	old := filepath.Join(cache, "build", "zz", "old")
	peer := filepath.Join(cache, "peers", "tool")
	for _, p := range []string{old, peer} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		month := time.Now().Add(-30 * 24 * time.Hour)
		if err := os.Chtimes(p, month, month); err != nil {
			t.Fatal(err)
		}
	}
	if _, errOut, code := runIn(t, dir, nil, "build", "--oci-layout", "out1"); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("under the default bound, an entry was pruned: %v", err)
	}
	_, errOut, code := runIn(t, dir, []string{"SLIPWAY_CACHE_MAX_BYTES=1"}, "build", "--oci-layout", "out2")
	if code != 0 {
		t.Fatalf("build with cache_max_bytes 1: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("over the bound, the least recently used entry is still there (%v)", err)
	}
	if _, err := os.Stat(peer); err != nil {
		t.Errorf("a file that is not slipway's cache was pruned: %v", err)
	}
}
