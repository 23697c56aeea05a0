// Package cachedir keeps slipway's caches private. A cache decides what is
// rebuilt and what a gate is told (a cached report with no findings turns a
// policy violation into a push), so, as ssh does with keys, a cache
// directory that someone else could write is refused rather than used.
package cachedir

import (
	"fmt"
	"os"
	"syscall"
)

// Ensure creates dir (mode 0700) when it is missing, then checks it as
// Check does.
func Ensure(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating cache directory: %w", err)
	}
	return Check(dir)
}

// Check fails unless dir (after symlinks) is a directory owned by the
// current user that neither group nor others can write.
func Check(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("cache directory %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("cache directory %s is owned by uid %d, not by you (uid %d): a cache another user can write could change what slipway builds and lets through; use your own directory (cache_dir, scan.cache_dir) or remove it", dir, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("cache directory %s is writable by group or others (mode %04o): a shared cache could change what slipway builds and lets through; run chmod go-w %s, or use a private directory", dir, perm, dir)
	}
	return nil
}
