package trivy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Default limits on decompressed layer bytes read by one scan of one
// platform image: a gzip bomb in a base layer fails the scan instead of
// running for hours or filling the temp dir.
const (
	DefaultMaxLayerBytes int64 = 2 << 30
	DefaultMaxImageBytes int64 = 8 << 30
)

// Option configures New.
type Option func(*options) error

type options struct {
	dbDir, cacheDir string
	maxAge          time.Duration
	allowStale      bool
	log             *slog.Logger
	now             func() time.Time
	parallel        int
	maxLayerBytes   int64
	maxImageBytes   int64
	vex             []string
	server          *ServerConfig
	redis           *RedisConfig
}

// WithDBDir sets the vulnerability DB directory, in Trivy's cache layout
// (dir/db/trivy.db, dir/db/metadata.json), so `trivy --cache-dir dir` and
// slipway share one DB. Default: Trivy's default cache dir
// ($XDG_CACHE_HOME/trivy, usually ~/.cache/trivy).
func WithDBDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("empty db dir")
		}
		o.dbDir = dir
		return nil
	}
}

// WithCacheDir sets where per-layer analysis results are kept. Default:
// $XDG_CACHE_HOME/slipway/scan.
func WithCacheDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("empty cache dir")
		}
		o.cacheDir = dir
		return nil
	}
}

// WithMaxAge sets the maximum age of the DB, measured from its UpdatedAt.
// Default: scan.DefaultDBMaxAge (168h). Zero disables the age check.
func WithMaxAge(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("negative db max age %s", d)
		}
		o.maxAge = d
		return nil
	}
}

// WithAllowStale lets scans use a DB older than the maximum age, logging a
// warning with its age. A missing or wrong-schema DB still fails.
// Default: false (fail closed).
func WithAllowStale(allow bool) Option {
	return func(o *options) error { o.allowStale = allow; return nil }
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.log = l
		}
		return nil
	}
}

// WithClock sets the clock used for the DB age and the report times.
// Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("nil clock")
		}
		o.now = now
		return nil
	}
}

// WithParallel sets how many layers are analysed at once. Default: GOMAXPROCS.
func WithParallel(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("parallel %d < 1", n)
		}
		o.parallel = n
		return nil
	}
}

// WithMaxDecompressed limits the decompressed bytes read from one layer
// and from all layers of one platform image in one scan; past either, the
// scan fails with an error wrapping ErrTooLarge. Zero keeps the default
// (DefaultMaxLayerBytes, DefaultMaxImageBytes).
func WithMaxDecompressed(perLayer, perImage int64) Option {
	return func(o *options) error {
		if perLayer < 0 || perImage < 0 {
			return fmt.Errorf("negative decompressed size limit (layer %d, image %d)", perLayer, perImage)
		}
		if perLayer > 0 {
			o.maxLayerBytes = perLayer
		}
		if perImage > 0 {
			o.maxImageBytes = perImage
		}
		return nil
	}
}
