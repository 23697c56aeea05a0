package pipeline

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
)

// SourceRoot is the directory that paths recorded in attestations
// (provenance, the vuln attestation) are relative to: the top level of
// the git work tree holding dir, else dir itself (the config file's
// directory, outside git). Recorded paths then read the same on every
// checkout, and say nothing of the machine that built the image.
func SourceRoot(ctx context.Context, dir string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err == nil {
		if top := strings.TrimSpace(out.String()); top != "" && filepath.IsAbs(top) {
			return top
		}
	}
	return dir
}

// RelativeTo returns the path p, relative to base when it is not absolute,
// as a slash-separated path relative to root: "svc/api", "." for root
// itself, "../shared" for a path beside it. Symbolic links in root and p
// are resolved first where they exist (git reports its top level
// resolved). An empty p stays empty.
func RelativeTo(root, base, p string) string {
	if p == "" {
		return ""
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	rel, err := filepath.Rel(realPath(root), realPath(p))
	if err != nil {
		// Not expressible relative to root (another volume): only the
		// last element, never the local absolute path.
		return filepath.Base(p)
	}
	return filepath.ToSlash(rel)
}

// realPath is p with symbolic links resolved, or p cleaned when it does
// not exist.
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}
