package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/internal/cachedir"
)

// DBIdentifier is implemented by scanners whose results depend on a
// vulnerability database: DBIdentity names the DB version they would use
// now (and fails, as a scan would, when the DB is unusable).
type DBIdentifier interface {
	DBIdentity() (string, error)
}

// Cached wraps a scanner with a report cache in dir: an index digest
// already scanned with the same DB version (and scanner) is not scanned
// again; the stored report is returned. Scanners that do not implement
// DBIdentifier are not cached. The cache is safe for concurrent processes
// (each entry is written with a temp file and a rename).
func Cached(s Scanner, dir string) Scanner {
	id, ok := s.(DBIdentifier)
	if !ok {
		return s
	}
	return &cachedScanner{inner: s, id: id, dir: dir}
}

// reportCacheVersion names the format of cache entries and is part of
// their key. v3: a cacheEntry, keeping Report.TrivyReport beside the
// report; v2 entries (a bare Report, without it) are never read.
const reportCacheVersion = "slipway-report-v3"

// cacheEntry is one report cache file.
type cacheEntry struct {
	Version     string          `json:"version"`
	Report      *Report         `json:"report"`
	TrivyReport json.RawMessage `json:"trivyReport,omitempty"`
}

type cachedScanner struct {
	inner Scanner
	id    DBIdentifier
	dir   string
}

// DBIdentity implements DBIdentifier: the wrapped scanner's.
func (c *cachedScanner) DBIdentity() (string, error) { return c.id.DBIdentity() }

// Scan implements Scanner.
func (c *cachedScanner) Scan(ctx context.Context, idx v1.ImageIndex) (*Report, error) {
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("computing digest: %w", err)
	}
	dbID, err := c.id.DBIdentity()
	if err != nil {
		return nil, err
	}
	// A report read from a directory others can write could be anyone's.
	if err := cachedir.Ensure(c.dir); err != nil {
		return nil, fmt.Errorf("report cache: %w", err)
	}
	sum := sha256.Sum256([]byte(reportCacheVersion + "\x00" + d.String() + "\x00" + dbID))
	path := filepath.Join(c.dir, hex.EncodeToString(sum[:])+".json")
	if b, err := os.ReadFile(path); err == nil {
		var e cacheEntry
		if json.Unmarshal(b, &e) == nil && e.Version == reportCacheVersion && e.Report != nil && e.Report.Subject == d.String() {
			e.Report.TrivyReport = e.TrivyReport
			e.Report.Cached = true
			cachedir.Touch(path) // used: kept by cache pruning
			return e.Report, nil
		}
	}
	r, err := c.inner.Scan(ctx, idx)
	if err != nil {
		return nil, err
	}
	if b, err := json.Marshal(cacheEntry{Version: reportCacheVersion, Report: r, TrivyReport: r.TrivyReport}); err == nil {
		_ = atomicfile.WriteBytes(path, 0o600, b) // a cache: a failed write only costs a rescan
	}
	return r, nil
}
