package resolve

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway-build/slipway/internal/atomicfile"
)

// FileResult is what Dir did to one file.
type FileResult struct {
	// Path is the file's path: dir joined with its path under dir.
	Path string
	// Changed counts the values replaced. A file with none is not rewritten.
	Changed int
	// Warnings are the values left alone that name a target's repository
	// (see Resolve).
	Warnings []Warning
}

// Dir resolves every *.yaml and *.yml file under dir, recursively, and
// rewrites in place the files that changed (see Resolve). Directories whose
// name starts with "." and files that are not regular files (symlinks, for
// one) are skipped.
//
// All files are read and resolved before any is written, so an invalid or
// unresolvable file (the error names it and the line) leaves every file as
// it was. Each file is replaced atomically (a temporary file in the same
// directory, renamed over it) and keeps its permission bits. The results
// are in lexical path order, one per file, changed or not; if a write fails,
// they stop before the file that failed, and the files they list as changed
// were written.
func Dir(dir string, pushed map[string]Pushed) ([]FileResult, error) {
	idx, err := newIndex(pushed)
	if err != nil {
		return nil, err
	}
	var paths []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml":
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	return idx.rewrite(paths)
}

// ResolveFile resolves the file at path (see Resolve) and, if anything
// changed, rewrites it in place atomically, keeping its permission bits.
// A symlink is followed: its target is rewritten. It returns the number
// of values replaced and the warnings.
func ResolveFile(path string, pushed map[string]Pushed) (FileResult, error) {
	idx, err := newIndex(pushed)
	if err != nil {
		return FileResult{}, err
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return FileResult{}, err
	}
	rs, err := idx.rewrite([]string{real})
	if err != nil {
		return FileResult{}, err
	}
	rs[0].Path = path
	return rs[0], nil
}

// rewrite resolves every file in paths, then writes those that changed.
func (idx *index) rewrite(paths []string) ([]FileResult, error) {
	type pending struct {
		out  []byte
		mode fs.FileMode
	}
	results := make([]FileResult, len(paths))
	todo := make([]pending, len(paths))
	for i, p := range paths {
		results[i].Path = p
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", p)
		}
		in, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out, n, warns, err := idx.resolve(in)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		results[i].Changed, results[i].Warnings = n, warns
		if n > 0 {
			todo[i] = pending{out: out, mode: info.Mode()}
		}
	}
	for i, p := range paths {
		if todo[i].out == nil {
			continue
		}
		if err := writeSynced(p, todo[i].out, todo[i].mode); err != nil {
			return results[:i], err
		}
	}
	return results, nil
}

// writeSynced replaces the file at path by data, with permissions mode,
// atomically; the data reaches the disk before the rename, since these are
// the user's files, not a cache.
func writeSynced(path string, data []byte, mode fs.FileMode) error {
	return atomicfile.Write(path, mode.Perm(), func(w io.Writer) error {
		if _, err := w.Write(data); err != nil {
			return err
		}
		if f, ok := w.(interface{ Sync() error }); ok {
			return f.Sync()
		}
		return nil
	})
}
