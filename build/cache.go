package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/internal/cachedir"
)

// binaryCache keeps compiled binaries keyed by everything that decides
// their bytes: every file the build reads (as `go list -deps` reports it:
// Go, assembly and embedded files of each package outside the module
// cache, go.mod and go.sum of every module not in the module cache,
// go.work), the identity (path@version) of modules in the module cache,
// the main package, flags, ldflags, the go command's environment
// (keyEnv), platform, toolchain and VCS state. A hit skips `go build`
// entirely.
type binaryCache struct {
	dir string

	mu        sync.Mutex
	toolchain map[string]*toolchainOnce // gobin, dir and env → go env
}

// toolchainOnce is one go env, run once however many builds ask for it;
// builds for other environments do not wait for it.
type toolchainOnce struct {
	once sync.Once
	tc   toolchain
	err  error
}

// toolchain is what `go env` says about a build.
type toolchain struct {
	id       string // GOVERSION, GOROOT and the settings read from go env
	modCache string // GOMODCACHE
	work     string // GOWORK: a go.work file, "" or "off"
}

func newBinaryCache(dir string) (*binaryCache, error) {
	if err := cachedir.Ensure(dir); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	return &binaryCache{dir: dir, toolchain: map[string]*toolchainOnce{}}, nil
}

// key computes the cache key of t for p, or "" when t cannot be cached
// (its flags use -overlay).
func (c *binaryCache) key(ctx context.Context, gobin string, t Target, p v1.Platform, env []string) (string, error) {
	for _, f := range t.Flags {
		if n := strings.TrimLeft(f, "-"); n == "overlay" || strings.HasPrefix(n, "overlay=") {
			return "", nil
		}
	}
	tc, err := c.toolchainID(ctx, gobin, t.Dir, env)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "slipway-binary-v2\x00%s\x00%s\x00%s\x00", tc.id, t.Main, platformString(p))
	for _, list := range [][]string{t.Ldflags, t.Flags, t.Env, keyEnv(env)} {
		fmt.Fprintf(h, "%d\x00%s\x00", len(list), strings.Join(list, "\x00"))
	}
	if err := hashInputs(ctx, h, gobin, t, env, tc); err != nil {
		return "", fmt.Errorf("hashing the inputs of %s: %w", t.Main, err)
	}
	// -buildvcs stamps the revision, commit time and modified flag of the
	// enclosing repository into the binary.
	vcs := t.vcs
	if vcs == nil {
		vcs = func() string { return vcsState(ctx, t.Dir) }
	}
	fmt.Fprintf(h, "%s\x00", vcs())
	return hex.EncodeToString(h.Sum(nil)), nil
}

// keyEnv is the part of the go build environment that can change the
// binary: the go command's own variables (GO*, CGO_*), except the
// locations of its caches and temporary files. The rest (TMPDIR,
// DOCKER_CONFIG, CI run ids, …) differs from run to run and would make
// every rerun a miss; the target's env: is hashed whole.
func keyEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOCACHE", "GOTMPDIR", "GOENV", "GOCACHEPROG":
			continue
		}
		if strings.HasPrefix(k, "GO") || strings.HasPrefix(k, "CGO_") {
			out = append(out, kv)
		}
	}
	return out
}

// listedPackage is the part of `go list -json` output the key needs.
type listedPackage struct {
	Dir        string
	ImportPath string
	Name       string
	Standard   bool
	DepOnly    bool
	Module     *listedModule

	GoFiles, CgoFiles, CFiles, CXXFiles, MFiles, HFiles, FFiles, SFiles []string
	SwigFiles, SwigCXXFiles, SysoFiles, EmbedFiles                      []string
}

type listedModule struct {
	Path    string
	Version string
	Dir     string
	GoMod   string
	Replace *listedModule
}

// listFields are the fields asked of go list (-json=…), which spares it
// computing the others.
const listFields = "Dir,ImportPath,Name,Standard,DepOnly,Module,GoFiles,CgoFiles,CFiles,CXXFiles,MFiles,HFiles,FFiles,SFiles,SwigFiles,SwigCXXFiles,SysoFiles,EmbedFiles"

// hashInputs hashes every file `go build` reads for t's main package and
// its dependencies, as `go list -deps` reports them with the same flags and
// environment. Files are read through symlinks. Standard-library packages
// are covered by the toolchain; packages in the module cache (read-only,
// verified against go.sum when downloaded) by their module's path@version.
func hashInputs(ctx context.Context, h io.Writer, gobin string, t Target, env []string, tc toolchain) error {
	out, err := listDeps(ctx, gobin, t, env)
	if err != nil {
		return err
	}
	inCache := func(p string) bool {
		return tc.modCache != "" && strings.HasPrefix(p, tc.modCache+string(filepath.Separator))
	}
	// hashFile hashes the content of the file at p under a name that does
	// not depend on where the checkout is (with -trimpath, neither does
	// the binary), so a clone elsewhere hits the same entries.
	hashFile := func(name, p string) error {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(h, "absent\x00%s\x00", name)
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "file\x00%s\x00%d\x00", name, len(b))
		h.Write(b)
		return nil
	}
	modFiles := map[string]bool{}
	hashModule := func(m *listedModule) error {
		for ; m != nil; m = m.Replace {
			fmt.Fprintf(h, "module\x00%s\x00%s\x00", m.Path, m.Version)
			if m.GoMod == "" || inCache(m.GoMod) || modFiles[m.GoMod] {
				continue
			}
			modFiles[m.GoMod] = true
			// go.mod and go.sum (or the -modfile and its .sum), and the
			// vendor list of a module outside the cache.
			sum := strings.TrimSuffix(m.GoMod, ".mod") + ".sum"
			for _, f := range []string{m.GoMod, sum, filepath.Join(filepath.Dir(m.GoMod), "vendor", "modules.txt")} {
				rel, _ := filepath.Rel(filepath.Dir(m.GoMod), f)
				if err := hashFile(m.Path+"@"+m.Version+":"+filepath.ToSlash(rel), f); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var main listedPackage
	err = eachListed(out, func(pkg listedPackage) error {
		if pkg.Standard {
			return nil
		}
		main = pkg
		fmt.Fprintf(h, "package\x00%s\x00", pkg.ImportPath)
		if err := hashModule(pkg.Module); err != nil {
			return err
		}
		if inCache(pkg.Dir) {
			return nil
		}
		for _, list := range [][]string{pkg.GoFiles, pkg.CgoFiles, pkg.CFiles, pkg.CXXFiles, pkg.MFiles, pkg.HFiles, pkg.FFiles,
			pkg.SFiles, pkg.SwigFiles, pkg.SwigCXXFiles, pkg.SysoFiles, pkg.EmbedFiles} {
			fmt.Fprintf(h, "%d\x00", len(list))
			for _, f := range list {
				if err := hashFile(pkg.ImportPath+":"+f, filepath.Join(pkg.Dir, f)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The main package comes last; go build reads its default.pgo unless
	// -pgo says otherwise (then the flag is in the key, and a named
	// profile is hashed below).
	if main.Dir != "" {
		if err := hashFile("main:default.pgo", filepath.Join(main.Dir, "default.pgo")); err != nil {
			return err
		}
	}
	for _, f := range t.Flags {
		if v, ok := strings.CutPrefix(strings.TrimLeft(f, "-"), "pgo="); ok && v != "auto" && v != "off" {
			if !filepath.IsAbs(v) {
				v = filepath.Join(t.Dir, v)
			}
			if err := hashFile("pgo:"+f, v); err != nil {
				return err
			}
		}
	}
	if tc.work != "" && tc.work != "off" {
		for _, f := range []string{tc.work, tc.work + ".sum"} {
			if err := hashFile("gowork:"+filepath.Base(f), f); err != nil {
				return err
			}
		}
	}
	return nil
}

// listing is the `go list -deps` output of a target's main package for
// its first platform: CheckMain's, which the binary cache key of that
// platform reuses, so a run makes one go list per target and platform,
// not two. CheckMain may run beside the build (StartCheckMain): whichever
// asks first runs go list, the other waits for its output.
type listing struct {
	key  string
	once sync.Once
	out  []byte
	err  error
}

func listingKey(gobin string, t Target, env []string) string {
	return strings.Join([]string{gobin, t.Dir, t.Main, strings.Join(t.Flags, "\x01"), strings.Join(env, "\x01")}, "\x00")
}

// get is the listing's go list output, made by the first caller with its
// ctx. A listing cut short by that caller's cancellation is not given to
// a caller whose ctx is still live: that one runs go list itself.
func (l *listing) get(ctx context.Context, gobin string, t Target, env []string) ([]byte, error) {
	l.once.Do(func() { l.out, l.err = goListDeps(ctx, gobin, t, env) })
	if l.err != nil && ctx.Err() == nil && (errors.Is(l.err, context.Canceled) || errors.Is(l.err, context.DeadlineExceeded)) {
		return goListDeps(ctx, gobin, t, env)
	}
	return l.out, l.err
}

// eachListed calls f for each package of a `go list -json` output, in
// order (dependencies first, the main package last).
func eachListed(out []byte, f func(listedPackage) error) error {
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg listedPackage
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading go list output: %w", err)
		}
		if err := f(pkg); err != nil {
			return err
		}
	}
}

// listDeps is `go list -deps -json` for t's main package with env: the
// listing CheckMain shares when it was made for the same go, flags and
// environment, else a go list of its own.
func listDeps(ctx context.Context, gobin string, t Target, env []string) ([]byte, error) {
	if t.listed != nil && t.listed.key == listingKey(gobin, t, env) {
		return t.listed.get(ctx, gobin, t, env)
	}
	return goListDeps(ctx, gobin, t, env)
}

// goListDeps runs `go list -deps -json` for t's main package with env.
func goListDeps(ctx context.Context, gobin string, t Target, env []string) ([]byte, error) {
	args := append([]string{"list", "-deps", "-json=" + listFields}, t.Flags...)
	cmd := exec.CommandContext(ctx, gobin, append(args, "--", t.Main)...)
	cmd.Dir = t.Dir
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("go list: %w", ctx.Err())
		}
		return nil, fmt.Errorf("go list: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
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
// environment and go env files, for a build in dir with env.
func (c *binaryCache) toolchainID(ctx context.Context, gobin, dir string, env []string) (toolchain, error) {
	// What go env reports does not depend on the target OS and
	// architecture (GOAMD64, GOARM64, … are reported whatever GOARCH is;
	// the platform is in the key on its own): one go env serves every
	// platform of a run.
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "GOOS=") || strings.HasPrefix(kv, "GOARCH=")
	})
	k := gobin + "\x00" + dir + "\x00" + strings.Join(env, "\x00")
	c.mu.Lock()
	o, ok := c.toolchain[k]
	if !ok {
		o = &toolchainOnce{}
		c.toolchain[k] = o
	}
	c.mu.Unlock()
	o.once.Do(func() { o.tc, o.err = goEnv(ctx, gobin, dir, env) })
	return o.tc, o.err
}

// goEnv asks the go command in dir with env for what identifies its builds.
func goEnv(ctx context.Context, gobin, dir string, env []string) (toolchain, error) {
	// Settings may also come from the go env file (go env -w), hence asked
	// of go env rather than read from env. GOWORK comes last.
	vars := []string{"GOVERSION", "GOROOT", "GOFLAGS", "GOPROXY", "GONOSUMDB", "GOEXPERIMENT", "GOTOOLCHAIN", "GOMODCACHE",
		"GOAMD64", "GOARM", "GOARM64", "GO386", "GOPPC64", "GORISCV64", "GOMIPS", "GOMIPS64", "GOWORK"}
	cmd := exec.CommandContext(ctx, gobin, append([]string{"env"}, vars...)...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return toolchain{}, fmt.Errorf("go env: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(vars) {
		return toolchain{}, fmt.Errorf("go env: %d lines for %d variables", len(lines), len(vars))
	}
	// GOWORK's location is kept out of the id (it is hashed by content).
	n := len(vars) - 1
	tc := toolchain{id: strings.Join(lines[:n], "\x00"), modCache: filepath.Clean(lines[7]), work: lines[n]}
	if lines[7] == "" {
		tc.modCache = ""
	}
	return tc, nil
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
	cachedir.Touch(c.path(key)) // used: kept by cache pruning
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
	return atomicfile.Write(dst, 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	})
}
