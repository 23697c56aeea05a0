package trivy

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/slipway-build/slipway/internal/testutil"
)

// redisBlobs returns every layer entry in Redis by key (Trivy's layout:
// fanal::blob::<key>).
func redisBlobs(t *testing.T, rc *redis.Client) map[string]ftypes.BlobInfo {
	t.Helper()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "fanal::blob::*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]ftypes.BlobInfo{}
	for _, k := range keys {
		b, err := rc.Get(ctx, k).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var info ftypes.BlobInfo
		if err := json.Unmarshal(b, &info); err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(k, "fanal::blob::")] = info
	}
	return out
}

func TestRedisCacheSharedAndPoisoned(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	const password = "redis-pa55word"
	rs := testutil.StartRedis(t, password)
	db := fixtureDB(t, now.Add(-time.Hour))
	idx := serverIndex(t)
	ctx := context.Background()

	local, err := newScanner(t, db).Scan(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	// Two scanners with their own cache dirs (two runners) share Redis.
	first := newScanner(t, db, WithRedisCache(RedisConfig{URL: rs.URL, TTL: time.Hour}))
	defer first.Close()
	r1, err := first.Scan(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(local, r1, reportCmp...); d != "" {
		t.Errorf("redis-cached report differs from the local one:\n%s", d)
	}
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: password})
	defer rc.Close()
	entries := redisBlobs(t, rc)
	if len(entries) < 3 { // Debian layer per platform, the binary's layer
		t.Fatalf("%d layer entries in redis, want 3", len(entries))
	}
	if ttl, err := rc.TTL(ctx, "fanal::blob::"+firstKey(entries)).Result(); err != nil || ttl <= 0 || ttl > time.Hour {
		t.Errorf("entry TTL %s, %v; want at most 1h", ttl, err)
	}

	// The second runner finds every layer in Redis: nothing is analysed.
	second := newScanner(t, db, WithRedisCache(RedisConfig{URL: rs.URL}))
	defer second.Close()
	counted := &countingBlobs{Cache: second.blobs}
	second.blobs = counted
	r2, err := second.Scan(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	if n := counted.puts; n != 0 {
		t.Errorf("second runner analysed %d layers, want 0 (shared cache)", n)
	}
	if d := cmp.Diff(local, r2, reportCmp...); d != "" {
		t.Errorf("second runner's report differs:\n%s", d)
	}

	// Poison: every layer key now holds an emptied entry written for
	// another layer (a runner with a bug, or someone with access to Redis
	// copying a clean layer's result over a vulnerable one).
	var keys []string
	for k := range entries {
		keys = append(keys, k)
	}
	for i, k := range keys {
		other := entries[keys[(i+1)%len(keys)]]
		other.PackageInfos, other.Applications, other.OS = nil, nil, ftypes.OS{}
		b, _ := json.Marshal(other)
		if err := rc.Set(ctx, "fanal::blob::"+k, b, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	third := newScanner(t, db, WithRedisCache(RedisConfig{URL: rs.URL}))
	defer third.Close()
	r3, err := third.Scan(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(local, r3, reportCmp...); d != "" {
		t.Errorf("poisoned redis changed the report:\n%s", d)
	}
	// The refused entries were analysed again and rewritten.
	if d := cmp.Diff(entries, redisBlobs(t, rc)); d != "" {
		t.Errorf("entries after the poisoned scan differ from the first ones:\n%s", d)
	}

	// Directly: an entry for another layer is refused.
	k := keys[0]
	bound := &boundCache{Cache: third.blobs, layers: map[string]layerIdentity{k: {diffID: "sha256:other", digest: entries[k].Digest}}}
	var pe *PoisonedEntryError
	if _, err := bound.GetBlob(ctx, k); !errors.As(err, &pe) {
		t.Errorf("GetBlob of an entry for another layer: %v, want *PoisonedEntryError", err)
	}
	if _, err := bound.GetBlob(ctx, "sha256:unknown"); err == nil {
		t.Error("GetBlob of a key outside the verified layers succeeded")
	}
}

func firstKey(m map[string]ftypes.BlobInfo) string {
	for k := range m {
		return k
	}
	return ""
}

// countingBlobs counts layer analyses stored.
type countingBlobs struct {
	cache.Cache
	puts int
}

func (c *countingBlobs) PutBlob(ctx context.Context, k string, info ftypes.BlobInfo) error {
	c.puts++
	return c.Cache.PutBlob(ctx, k, info)
}

func TestRedisCacheRefusesBadSetup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	const password = "redis-pa55word"
	rs := testutil.StartRedis(t, password)
	wrong := strings.Replace(rs.URL, password, "wrong-pa55", 1)
	for name, c := range map[string]RedisConfig{
		"wrong password": {URL: wrong},
		"nothing there":  {URL: "redis://127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))},
		"not redis":      {URL: "http://" + rs.Addr},
		"half TLS":       {URL: rs.URL, CACert: "ca.pem"},
		"negative TTL":   {URL: rs.URL, TTL: -time.Second},
	} {
		_, err := New(WithDBDir(t.TempDir()), WithCacheDir(t.TempDir()), WithRedisCache(c))
		if err == nil {
			t.Errorf("%s: New succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), "pa55") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}

func TestRedisCacheTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	rs, caFile := testutil.StartRedisTLS(t)
	// Trivy's --redis-ca/--redis-cert/--redis-key: the CA's own files
	// stand in for a client certificate (the server asks for none).
	dir := filepath.Dir(caFile)
	db := fixtureDB(t, now.Add(-time.Hour))
	idx := serverIndex(t)
	local, err := newScanner(t, db).Scan(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	s := newScanner(t, db, WithRedisCache(RedisConfig{URL: rs.URL, CACert: caFile,
		Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}))
	defer s.Close()
	got, err := s.Scan(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(local, got, reportCmp...); d != "" {
		t.Errorf("report through TLS redis differs:\n%s", d)
	}
	// Without the CA the server's certificate is not trusted: refused.
	if _, err := New(WithDBDir(db), WithCacheDir(t.TempDir()), WithRedisCache(RedisConfig{URL: rs.URL})); err == nil {
		t.Error("rediss:// with an untrusted certificate was accepted")
	}
	// Plain redis:// to a TLS-only port fails too.
	if _, err := New(WithDBDir(db), WithCacheDir(t.TempDir()), WithRedisCache(RedisConfig{URL: "redis://" + rs.Addr})); err == nil {
		t.Error("redis:// to a TLS port was accepted")
	}
}
