package cachedir

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Issue 14 item 9: the caches stay bounded, least recently used first.
func TestPrune(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "build"), filepath.Join(root, "reports")
	now := time.Now()
	write := func(p string, size int, age time.Duration) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(a, "aa", "old"), 100, 48*time.Hour)
	write(filepath.Join(a, "bb", "mid"), 100, 2*time.Hour)
	write(filepath.Join(b, "new"), 100, time.Minute)
	write(filepath.Join(b, "used"), 100, 72*time.Hour)
	Touch(filepath.Join(b, "used")) // read by a run: newest now

	res, err := Prune([]string{a, b, filepath.Join(root, "missing")}, 24*time.Hour, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 1 || res.Bytes != 100 || res.KeptBytes != 300 {
		t.Fatalf("max-age 24h: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(a, "aa")); !os.IsNotExist(err) {
		t.Errorf("emptied directory kept: %v", err)
	}
	res, err = Prune([]string{a, b}, 0, 150, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 2 || res.KeptBytes != 100 {
		t.Fatalf("max-size 150: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(b, "used")); err != nil {
		t.Errorf("the most recently used entry was pruned: %v", err)
	}
	if _, err := os.Stat(a); err != nil {
		t.Errorf("a cache root was removed: %v", err)
	}
}
