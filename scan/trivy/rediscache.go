package trivy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/redis/go-redis/v9"
)

// analysisCache holds Trivy's per-layer and per-image analysis entries:
// the local directory (layerCache) or a shared Redis.
type analysisCache = cache.Cache

// RedisConfig configures a per-layer analysis cache in Redis shared by
// several slipway processes (CI runners), through Trivy's own Redis cache
// (the keys `trivy --cache-backend redis://…` uses).
type RedisConfig struct {
	// URL is redis://[user:password@]host:port[/db] or rediss://… (TLS).
	// A password in it is a secret: never logged or shown.
	URL string
	// CACert, Cert and Key are PEM files for TLS with a client
	// certificate, as Trivy's --redis-ca, --redis-cert, --redis-key: all
	// three or none.
	CACert, Cert, Key string
	// TTL is how long an entry is kept (0: no expiry), as Trivy's
	// --cache-ttl.
	TTL time.Duration
}

// WithRedisCache keeps Trivy's per-layer analysis in Redis instead of the
// cache dir (layer indexes stay in the cache dir). An entry is only used
// for the layer it was written for (see boundCache). Default: the cache
// dir.
func WithRedisCache(c RedisConfig) Option {
	return func(o *options) error {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return fmt.Errorf("redis cache URL %q: want redis://host:port or rediss://host:port", RedactRedisURL(c.URL))
		}
		n := 0
		for _, f := range []string{c.CACert, c.Cert, c.Key} {
			if f != "" {
				n++
			}
		}
		if n != 0 && n != 3 {
			return errors.New("redis cache TLS: give the CA, the client certificate and its key, or none")
		}
		if c.TTL < 0 {
			return fmt.Errorf("negative redis cache TTL %s", c.TTL)
		}
		o.redis = &c
		return nil
	}
}

// RedactRedisURL is a Redis URL without its password, for messages.
func RedactRedisURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

// redisTimeout bounds the first connection check.
const redisTimeout = 10 * time.Second

// redisLog routes go-redis's own messages (its connection pool writes
// them to stderr by default) to the scanner's logger, at debug level.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug("redis", "msg", fmt.Sprintf(format, v...))
}

func newRedisCache(c RedisConfig, log *slog.Logger) (cache.Cache, error) {
	redis.SetLogger(redisLog{log}) // process-wide in go-redis
	shown := RedactRedisURL(c.URL)
	// TLS is on for rediss:// (go-redis) and with the three files.
	rc, err := cache.NewRedisCache(c.URL, c.CACert, c.Cert, c.Key, c.CACert != "", c.TTL)
	if err != nil {
		// Trivy's errors may quote the URL: name ours only.
		return nil, fmt.Errorf("redis cache %s: %s", shown, redactErr(err, c.URL))
	}
	// Trivy's Redis cache reads a failed lookup as a miss: check once that
	// the server answers, so a wrong URL fails here and not as a cache
	// that never hits and fails on the first write.
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if _, _, err := rc.MissingBlobs(ctx, "sha256:slipway-ping", nil); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis cache %s: %s", shown, redactErr(err, c.URL))
	}
	if err := rc.PutArtifact(ctx, "sha256:slipway-ping", ftypes.ArtifactInfo{}); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis cache %s: %s", shown, redactErr(err, c.URL))
	}
	return rc, nil
}

// redactErr is err's message with the URL's password replaced.
func redactErr(err error, rawURL string) string {
	msg := err.Error()
	if u, perr := url.Parse(rawURL); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "****")
		}
	}
	return msg
}

// layerIdentity is what a layer entry must say about itself: the view
// layer ID it was computed for (DiffID) and that layer's verified digest.
type layerIdentity struct{ diffID, digest string }

// boundCache is the analysis cache as one inspection uses it: every layer
// key it may read was computed from a view layer whose digest slipway
// verified, and an entry is used only if it describes that layer (its
// DiffID and Digest). One that does not (copied from another layer's key,
// written by something else) counts as missing: the layer is analysed
// again and the entry overwritten. The image entry must name the config's
// OS and architecture. Keys it was not told about are refused.
type boundCache struct {
	cache.Cache
	layers map[string]layerIdentity
	arch   string
	os     string
}

var _ cache.Cache = (*boundCache)(nil)

// PoisonedEntryError is a cache entry that does not describe the layer its
// key names.
type PoisonedEntryError struct {
	Key, Field, Got, Want string
}

func (e *PoisonedEntryError) Error() string {
	return fmt.Sprintf("scan cache entry %s: %s is %q, want %q (entry not written for this layer: refused)", e.Key, e.Field, e.Got, e.Want)
}

// GetBlob returns the entry of a known layer key, checked.
func (b *boundCache) GetBlob(ctx context.Context, key string) (ftypes.BlobInfo, error) {
	want, ok := b.layers[key]
	if !ok {
		return ftypes.BlobInfo{}, fmt.Errorf("scan cache: layer key %s is not one of the verified layers", key)
	}
	info, err := b.Cache.GetBlob(ctx, key)
	if err != nil {
		return ftypes.BlobInfo{}, err
	}
	switch {
	case info.DiffID != want.diffID:
		return ftypes.BlobInfo{}, &PoisonedEntryError{Key: key, Field: "DiffID", Got: info.DiffID, Want: want.diffID}
	case info.Digest != want.digest:
		return ftypes.BlobInfo{}, &PoisonedEntryError{Key: key, Field: "Digest", Got: info.Digest, Want: want.digest}
	case info.SchemaVersion != ftypes.BlobJSONSchemaVersion:
		return ftypes.BlobInfo{}, &PoisonedEntryError{Key: key, Field: "SchemaVersion", Got: fmt.Sprint(info.SchemaVersion), Want: fmt.Sprint(ftypes.BlobJSONSchemaVersion)}
	}
	return info, nil
}

// GetArtifact returns the image entry, checked against the config.
func (b *boundCache) GetArtifact(ctx context.Context, key string) (ftypes.ArtifactInfo, error) {
	info, err := b.Cache.GetArtifact(ctx, key)
	if err != nil {
		return ftypes.ArtifactInfo{}, err
	}
	if info.SchemaVersion != ftypes.ArtifactJSONSchemaVersion || info.Architecture != b.arch || info.OS != b.os {
		return ftypes.ArtifactInfo{}, &PoisonedEntryError{Key: key, Field: "OS/Architecture",
			Got: info.OS + "/" + info.Architecture, Want: b.os + "/" + b.arch}
	}
	return info, nil
}

// MissingBlobs is the inner cache's answer, plus every entry present that
// does not pass GetBlob's or GetArtifact's checks.
func (b *boundCache) MissingBlobs(ctx context.Context, artifactKey string, keys []string) (bool, []string, error) {
	missingArtifact, missing, err := b.Cache.MissingBlobs(ctx, artifactKey, keys)
	if err != nil {
		return false, nil, err
	}
	for _, k := range keys {
		if slices.Contains(missing, k) {
			continue
		}
		if _, err := b.GetBlob(ctx, k); err != nil {
			missing = append(missing, k)
		}
	}
	if !missingArtifact {
		if _, err := b.GetArtifact(ctx, artifactKey); err != nil {
			missingArtifact = true
		}
	}
	return missingArtifact, missing, nil
}
