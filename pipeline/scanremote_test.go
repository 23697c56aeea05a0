package pipeline

import (
	"strings"
	"testing"
	"time"
)

func TestValidateScanRemote(t *testing.T) {
	for _, c := range []struct {
		name    string
		scan    ScanConfig
		wantKey string // "" valid
	}{
		{"server with token", ScanConfig{Server: "https://trivy.ci:4954", ServerTokenEnv: "TRIVY_TOKEN", ServerHeaders: map[string]string{"X-A": "b"}, ServerTimeout: time.Minute}, ""},
		{"redis with TLS", ScanConfig{Cache: "rediss://:pw@redis:6379/0", CacheCA: "ca.pem", CacheCert: "c.pem", CacheKey: "k.pem", CacheTTL: time.Hour}, ""},
		{"server not http", ScanConfig{Server: "trivy.ci:4954"}, "scan.server"},
		{"server with credentials", ScanConfig{Server: "https://u:p@trivy.ci"}, "scan.server"},
		{"token env without server", ScanConfig{ServerTokenEnv: "T"}, "scan.server"},
		{"token in the env key", ScanConfig{Server: "http://x", ServerTokenEnv: "abc-123=secret"}, "scan.server_token_env"},
		{"bad header", ScanConfig{Server: "http://x", ServerHeaders: map[string]string{"a b": "c"}}, "scan.server_headers"},
		{"bad token header", ScanConfig{Server: "http://x", ServerTokenHeader: "a:b"}, "scan.server_token_header"},
		{"negative timeout", ScanConfig{Server: "http://x", ServerTimeout: -time.Second}, "scan.server_timeout"},
		{"cache not redis", ScanConfig{Cache: "memcached://:hunter2@x"}, "scan.cache"},
		{"half TLS", ScanConfig{Cache: "redis://x:6379", CacheCA: "ca.pem"}, "scan.cache_ca"},
		{"TLS without cache", ScanConfig{CacheCA: "a", CacheCert: "b", CacheKey: "c"}, "scan.cache"},
		{"negative ttl", ScanConfig{Cache: "redis://x:6379", CacheTTL: -time.Second}, "scan.cache_ttl"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &Config{Scan: c.scan}
			err := cfg.Validate("f.yaml")
			if c.wantKey == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			ce, ok := err.(*ConfigError)
			if !ok || ce.Key != c.wantKey {
				t.Fatalf("err = %v, want a ConfigError on %s", err, c.wantKey)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}
