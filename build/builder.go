package build

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// GoBuilder builds targets with the go command. Its job limit bounds the
// number of concurrent compilations across every Build call.
type GoBuilder struct {
	sem      chan struct{}
	gobin    string
	log      *slog.Logger
	caMode   string
	caBundle []byte
	cache    *binaryCache

	zoneMu  sync.Mutex
	zoneZip []byte // the toolchain's zoneinfo.zip, read once
}

var _ Builder = (*GoBuilder)(nil)

// Option configures New.
type Option func(*GoBuilder) error

// WithJobs bounds concurrent `go build` invocations. Default: the number of
// CPUs.
func WithJobs(n int) Option {
	return func(g *GoBuilder) error {
		if n < 1 {
			return fmt.Errorf("jobs must be at least 1, got %d", n)
		}
		g.sem = make(chan struct{}, n)
		return nil
	}
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(g *GoBuilder) error { g.log = l; return nil }
}

// WithGo sets the go command to run. Default: $GOROOT/bin/go or go on PATH.
func WithGo(path string) Option {
	return func(g *GoBuilder) error { g.gobin = path; return nil }
}

// WithBinaryCache keeps compiled binaries in dir, keyed by the source tree,
// go.sum, flags, platform and toolchain, so an unchanged target is not
// recompiled (not even linked). Default: no cache (go's own build cache
// still applies).
func WithBinaryCache(dir string) Option {
	return func(g *GoBuilder) error {
		c, err := newBinaryCache(dir)
		if err != nil {
			return err
		}
		g.cache = c
		return nil
	}
}

// CA certificate modes for WithCACertificates.
const (
	CASystem = "system" // the build machine's trust store
	CANone   = "none"   // no CA layer
)

// WithCACertificates chooses the CA bundle added to images on scratch:
// CASystem (default), CANone, or the path of a PEM file.
func WithCACertificates(mode string) Option {
	return func(g *GoBuilder) error {
		if mode == "" {
			mode = CASystem
		}
		g.caMode = mode
		return nil
	}
}

// New returns a GoBuilder.
func New(opts ...Option) (*GoBuilder, error) {
	g := &GoBuilder{
		sem:    make(chan struct{}, runtime.NumCPU()),
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		caMode: CASystem,
	}
	for _, o := range opts {
		if err := o(g); err != nil {
			return nil, err
		}
	}
	if g.gobin == "" {
		p, err := findGo()
		if err != nil {
			return nil, err
		}
		g.gobin = p
	}
	switch g.caMode {
	case CANone:
	case CASystem:
		// Read lazily: only images on scratch need it.
	default:
		b, err := CABundle(g.caMode)
		if err != nil {
			return nil, err
		}
		g.caBundle = b
	}
	return g, nil
}

// zoneinfo is the toolchain's zoneinfo.zip, read on first use.
func (g *GoBuilder) zoneinfo(ctx context.Context) ([]byte, error) {
	g.zoneMu.Lock()
	defer g.zoneMu.Unlock()
	if g.zoneZip == nil {
		b, err := toolchainZoneinfo(ctx, g.gobin)
		if err != nil {
			return nil, err
		}
		g.zoneZip = b
	}
	return g.zoneZip, nil
}

func (g *GoBuilder) caCerts() ([]byte, error) {
	switch {
	case g.caMode == CANone:
		return nil, nil
	case g.caBundle != nil:
		return g.caBundle, nil
	}
	return CABundle("")
}

// Build compiles t for each platform (in parallel, within the job limit)
// and assembles the index.
func (g *GoBuilder) Build(ctx context.Context, t Target) (*Result, error) {
	if t.Base == nil && t.ResolveBase == nil {
		return nil, fmt.Errorf("target %s: no base image", t.Name)
	}
	if len(t.Platforms) == 0 {
		return nil, fmt.Errorf("target %s: no platforms", t.Name)
	}
	if t.Base != nil {
		if err := t.Base.CheckPlatforms(t.Platforms); err != nil {
			return nil, err
		}
	}
	static, err := staticFiles(t)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	kd, err := t.koData()
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	tmp, err := os.MkdirTemp("", "slipway-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	eg, ectx := errgroup.WithContext(ctx)
	t.vcs = sync.OnceValue(func() string { return vcsState(ectx, t.Dir) })
	// What the platforms share and only the assembly needs: the base, and
	// the layers that depend on it (CA bundle and runtime files on scratch,
	// the media type of the static files layer).
	type shared struct {
		base  *Base
		ca    []byte
		extra extraLayers
	}
	ready := make(chan struct{})
	var sh shared
	eg.Go(func() error {
		defer close(ready)
		base := t.Base
		if base == nil {
			var err error
			if base, err = t.ResolveBase(ectx); err != nil {
				return err
			}
			if err := base.CheckPlatforms(t.Platforms); err != nil {
				return err
			}
		}
		var ca []byte
		var scratch []layerFile
		if base.IsScratch() {
			var err error
			if ca, err = g.caCerts(); err != nil {
				return err
			}
			if scratch, err = scratchLayerFiles(t.Image.Scratch, func() ([]byte, error) { return g.zoneinfo(ectx) }); err != nil {
				return fmt.Errorf("target %s: %w", t.Name, err)
			}
		}
		extra, err := newExtraLayers(t, scratch, static, kd != "", base.OCI())
		if err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		sh = shared{base: base, ca: ca, extra: extra}
		return nil
	})
	images := make([]PlatformImage, len(t.Platforms))
	for i, p := range t.Platforms {
		eg.Go(func() error {
			out := filepath.Join(tmp, fmt.Sprintf("%d", i))
			bin, err := g.compilePlatform(ectx, t, p, out)
			if err != nil {
				return err
			}
			select {
			case <-ready:
			case <-ectx.Done():
				return ectx.Err()
			}
			if sh.base == nil { // its error is the group's
				return nil
			}
			tb := t
			tb.Base = sh.base
			pi, err := assemblePlatform(tb, p, bin, sh.ca, sh.extra)
			if err != nil {
				return err
			}
			images[i] = *pi
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	t.Base = sh.base
	return Assemble(t, images)
}

// compiled is one platform's binary.
type compiled struct {
	path   string
	size   int64
	cached bool
}

// compilePlatform compiles t for p into out, within the builder's job limit.
func (g *GoBuilder) compilePlatform(ctx context.Context, t Target, p v1.Platform, out string) (compiled, error) {
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		return compiled{}, ctx.Err()
	}
	start := time.Now()
	cached, err := g.compile(ctx, t, p, out)
	<-g.sem
	if err != nil {
		return compiled{}, err
	}
	if err := checkVCS(out, t); err != nil {
		return compiled{}, fmt.Errorf("building %s for %s: %w", t.Name, platformString(p), err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return compiled{}, err
	}
	g.log.Debug("compiled", "target", t.Name, "platform", platformString(p), "bytes", fi.Size(), "cached", cached, "took", time.Since(start).Round(time.Millisecond))
	return compiled{path: out, size: fi.Size(), cached: cached}, nil
}

// assemblePlatform puts bin onto t.Base's image for p.
func assemblePlatform(t Target, p v1.Platform, bin compiled, ca []byte, extra extraLayers) (*PlatformImage, error) {
	base, baseDigest, err := t.Base.Image(p)
	if err != nil {
		return nil, err
	}
	img, err := appImage(t, base, baseDigest, p, bin.path, ca, extra, t.Base.OCI())
	if err != nil {
		return nil, fmt.Errorf("assembling %s for %s: %w", t.Name, platformString(p), err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("assembling %s for %s: %w", t.Name, platformString(p), err)
	}
	return &PlatformImage{Platform: p, Image: img, Digest: d, BaseDigest: baseDigest, BinarySize: bin.size, Cached: bin.cached}, nil
}

// compile produces the binary at out, from the binary cache when an
// identical build is in it.
//
// The cache key costs a go env, a go list and reading every input (0.2-0.4 s
// on a small service), and after a change it is a miss: so `go build` starts
// beside it, into a file of its own, instead of after it. A hit cancels the
// build; its work directory is inside out's directory (GOTMPDIR), which the
// caller removes.
func (g *GoBuilder) compile(ctx context.Context, t Target, p v1.Platform, out string) (cached bool, err error) {
	if g.cache == nil {
		return false, goBuild(ctx, g.gobin, t, p, out)
	}
	penv, err := platformEnv(p)
	if err != nil {
		return false, err
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	built := out + ".build"
	done := make(chan error, 1)
	go func() { done <- goBuild(bctx, g.gobin, t, p, built) }()

	env := buildEnv(os.Environ(), penv, t.Env, t.SecretEnv)
	key, err := g.cache.key(ctx, g.gobin, t, p, env)
	if err != nil {
		g.log.Debug("build cache unavailable", "target", t.Name, "err", err)
	}
	if g.cache.get(key, out) {
		cancel()
		<-done
		os.Remove(built)
		return true, nil
	}
	if err := <-done; err != nil {
		return false, err
	}
	if err := os.Rename(built, out); err != nil {
		return false, err
	}
	if err := g.cache.put(key, out); err != nil {
		g.log.Debug("build cache write failed", "target", t.Name, "err", err)
	}
	return false, nil
}
