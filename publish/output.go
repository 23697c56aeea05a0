package publish

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// gitignore is written into the output directory slipway creates.
const gitignore = "# Written by slipway: its output is not source.\n*\n"

// MkdirOutput creates dir and its missing parents for slipway's output
// (the OCI layout, the results file). The topmost directory it creates
// gets a .gitignore holding "*": in a checkout that does not ignore it,
// untracked output would make `go build -buildvcs` stamp
// vcs.modified=true, so the next build of the same commit would give
// another binary, another digest and a binary-cache miss. A directory that
// already exists is left as it is.
func MkdirOutput(dir string) error {
	dir = filepath.Clean(dir)
	top := ""
	for d := dir; ; d = filepath.Dir(d) {
		_, err := os.Lstat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		top = d
		if filepath.Dir(d) == d {
			break
		}
	}
	if top == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(top, ".gitignore"), []byte(gitignore), 0o644); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return nil
}
