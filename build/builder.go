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
	if t.Base == nil {
		return nil, fmt.Errorf("target %s: no base image", t.Name)
	}
	if len(t.Platforms) == 0 {
		return nil, fmt.Errorf("target %s: no platforms", t.Name)
	}
	if err := t.Base.CheckPlatforms(t.Platforms); err != nil {
		return nil, err
	}
	var ca []byte
	var scratch []layerFile
	if t.Base.IsScratch() {
		var err error
		if ca, err = g.caCerts(); err != nil {
			return nil, err
		}
		if scratch, err = scratchLayerFiles(t.Image.Scratch, func() ([]byte, error) { return g.zoneinfo(ctx) }); err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
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
	extra, err := newExtraLayers(t, scratch, static, kd != "", t.Base.OCI())
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	tmp, err := os.MkdirTemp("", "slipway-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	images := make([]PlatformImage, len(t.Platforms))
	eg, ectx := errgroup.WithContext(ctx)
	for i, p := range t.Platforms {
		eg.Go(func() error {
			pi, err := g.buildPlatform(ectx, t, p, filepath.Join(tmp, fmt.Sprintf("%d", i)), ca, extra)
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
	idx, err := assembleIndex(t, images, t.Base.OCI())
	if err != nil {
		return nil, fmt.Errorf("assembling index: %w", err)
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("computing index digest: %w", err)
	}
	res := &Result{Target: t.Name, Index: idx, Digest: d, Images: images, Base: BaseInfo{Name: t.Base.Name}}
	if !t.Base.IsScratch() {
		res.Base.Digest = t.Base.Digest.String()
	}
	return res, nil
}

func (g *GoBuilder) buildPlatform(ctx context.Context, t Target, p v1.Platform, out string, ca []byte, extra extraLayers) (*PlatformImage, error) {
	base, baseDigest, err := t.Base.Image(p)
	if err != nil {
		return nil, err
	}
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	start := time.Now()
	cached, err := g.compile(ctx, t, p, out)
	<-g.sem
	if err != nil {
		return nil, err
	}
	if err := checkVCS(out, t); err != nil {
		return nil, fmt.Errorf("building %s for %s: %w", t.Name, platformString(p), err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	g.log.Debug("compiled", "target", t.Name, "platform", platformString(p), "bytes", fi.Size(), "cached", cached, "took", time.Since(start).Round(time.Millisecond))
	img, err := appImage(t, base, baseDigest, p, out, ca, extra, t.Base.OCI())
	if err != nil {
		return nil, fmt.Errorf("assembling %s for %s: %w", t.Name, platformString(p), err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("assembling %s for %s: %w", t.Name, platformString(p), err)
	}
	return &PlatformImage{Platform: p, Image: img, Digest: d, BaseDigest: baseDigest, BinarySize: fi.Size(), Cached: cached}, nil
}

// compile produces the binary at out, from the binary cache when an
// identical build is in it.
func (g *GoBuilder) compile(ctx context.Context, t Target, p v1.Platform, out string) (cached bool, err error) {
	if g.cache == nil {
		return false, goBuild(ctx, g.gobin, t, p, out)
	}
	penv, err := platformEnv(p)
	if err != nil {
		return false, err
	}
	env := buildEnv(os.Environ(), penv, t.Env, t.SecretEnv)
	key, err := g.cache.key(ctx, g.gobin, t, p, env)
	if err != nil {
		g.log.Debug("build cache unavailable", "target", t.Name, "err", err)
	}
	if g.cache.get(key, out) {
		return true, nil
	}
	if err := goBuild(ctx, g.gobin, t, p, out); err != nil {
		return false, err
	}
	if err := g.cache.put(key, out); err != nil {
		g.log.Debug("build cache write failed", "target", t.Name, "err", err)
	}
	return false, nil
}
