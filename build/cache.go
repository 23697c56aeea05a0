package build

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/internal/cachedir"
)

// binaryCache keeps compiled binaries keyed by everything that decides
// their bytes: the module's source tree (every file but .git, which go.sum
// pins the dependencies of), the main package, flags, ldflags, environment,
// platform and toolchain. A hit skips `go build` entirely.
type binaryCache struct {
	dir string

	mu        sync.Mutex
	toolchain map[string]string // gobin → `go version` + relevant go env
}

func newBinaryCache(dir string) (*binaryCache, error) {
	if err := cachedir.Ensure(dir); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	return &binaryCache{dir: dir, toolchain: map[string]string{}}, nil
}

// key computes the cache key of t for p, or "" when t cannot be cached
// (its go.mod replaces a module with a directory outside the tree).
func (c *binaryCache) key(ctx context.Context, gobin string, t Target, p v1.Platform, env []string) (string, error) {
	tc, err := c.toolchainID(ctx, gobin, t.Dir, env)
	if err != nil {
		return "", err
	}
	if localReplace(filepath.Join(t.Dir, "go.mod")) {
		return "", nil
	}
	h := sha256.New()
	fmt.Fprintf(h, "slipway-binary-v1\x00%s\x00%s\x00%s\x00", tc, t.Main, platformString(p))
	for _, list := range [][]string{t.Ldflags, t.Flags, env} {
		fmt.Fprintf(h, "%d\x00%s\x00", len(list), strings.Join(list, "\x00"))
	}
	if err := hashTree(h, t.Dir); err != nil {
		return "", fmt.Errorf("hashing source tree %s: %w", t.Dir, err)
	}
	// -buildvcs stamps the revision, commit time and modified flag of the
	// enclosing repository into the binary.
	fmt.Fprintf(h, "%s\x00", vcsState(ctx, t.Dir))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// vcsState is what `go build -buildvcs=auto` stamps from a git checkout:
// HEAD and its time, and whether the tree is modified.
func vcsState(ctx context.Context, dir string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "log", "-1", "--format=%H %ct").Output()
	if err != nil {
		return "no-vcs"
	}
	st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain").Output()
	if err != nil {
		return "no-vcs"
	}
	return strings.TrimSpace(string(out)) + " modified=" + fmt.Sprint(len(strings.TrimSpace(string(st))) > 0)
}

// toolchainID identifies the go command and the settings it reads from the
// environment and go env files.
func (c *binaryCache) toolchainID(ctx context.Context, gobin, dir string, env []string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.toolchain[gobin]; ok {
		return id, nil
	}
	cmd := exec.CommandContext(ctx, gobin, "env", "GOVERSION", "GOROOT", "GOFLAGS", "GOPROXY", "GONOSUMDB", "GOEXPERIMENT", "GOTOOLCHAIN")
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	id := strings.Join(strings.Fields(string(out)), " ")
	c.toolchain[gobin] = id
	return id, nil
}

// localReplace reports whether go.mod replaces a module with a directory.
func localReplace(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		l := strings.TrimSpace(s.Text())
		if !strings.Contains(l, "=>") {
			continue
		}
		_, right, _ := strings.Cut(l, "=>")
		right = strings.TrimSpace(right)
		if strings.HasPrefix(right, ".") || strings.HasPrefix(right, "/") {
			return true
		}
	}
	return false
}

// hashTree hashes the names, modes and contents of every regular file under
// dir, in sorted order, skipping VCS directories.
func hashTree(h io.Writer, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".hg" || d.Name() == ".svn") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, p := range files {
		rel, _ := filepath.Rel(dir, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", filepath.ToSlash(rel), fi.Mode().Perm()&0o111, fi.Size())
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *binaryCache) path(key string) string { return filepath.Join(c.dir, key[:2], key) }

// get copies the cached binary for key to out, reporting whether it was there.
func (c *binaryCache) get(key, out string) bool {
	if key == "" {
		return false
	}
	src, err := os.Open(c.path(key))
	if err != nil {
		return false
	}
	defer src.Close()
	dst, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return false
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return false
	}
	return dst.Close() == nil
}

// put stores the binary at bin under key, atomically (temp file + rename),
// so concurrent slipway processes never see a partial file.
func (c *binaryCache) put(key, bin string) error {
	if key == "" {
		return nil
	}
	dst := c.path(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	src, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
