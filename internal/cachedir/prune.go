package cachedir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// DefaultMaxSize bounds slipway's caches after every run unless the user
// sets another bound: 5 GiB, least recently used first.
const DefaultMaxSize int64 = 5 << 30

// Touch marks path as used now (its modification time), so pruning keeps
// what runs still use: entries are written once and then only read.
func Touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Files     int
	Bytes     int64
	KeptBytes int64
}

// Prune removes regular files under each of dirs, least recently used
// (oldest modification time) first: every file older than maxAge (when
// positive), then more until what is left is at most maxSize bytes (when
// positive). Empty directories left behind are removed; dirs themselves
// stay. A missing dir is skipped.
func Prune(dirs []string, maxAge time.Duration, maxSize int64, now time.Time) (PruneResult, error) {
	type entry struct {
		path string
		size int64
		mod  time.Time
	}
	var files []entry
	var total int64
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !de.Type().IsRegular() {
				return nil
			}
			fi, err := de.Info()
			if err != nil {
				return nil // removed meanwhile
			}
			files = append(files, entry{p, fi.Size(), fi.ModTime()})
			total += fi.Size()
			return nil
		})
		if err != nil {
			return PruneResult{}, err
		}
	}
	slices.SortFunc(files, func(a, b entry) int { return a.mod.Compare(b.mod) })
	var res PruneResult
	touched := map[string]bool{}
	for _, f := range files {
		old := maxAge > 0 && now.Sub(f.mod) > maxAge
		big := maxSize > 0 && total > maxSize
		if !old && !big {
			break
		}
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
		total -= f.size
		res.Files++
		res.Bytes += f.size
		touched[filepath.Dir(f.path)] = true
	}
	// Remove directories emptied by the pruning (not the roots).
	for d := range touched {
		for ; !slices.Contains(dirs, d) && d != "." && d != "/"; d = filepath.Dir(d) {
			if os.Remove(d) != nil {
				break
			}
		}
	}
	res.KeptBytes = total
	return res, nil
}
