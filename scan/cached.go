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

// ConfigIdentifier is implemented by scanners whose reports depend on
// configuration besides the DB (scan/trivy: the VEX documents):
// ConfigIdentity names it, and the report cache keys on it.
type ConfigIdentifier interface {
	ConfigIdentity() string
}

// SBOMMaker makes an SBOM of an index in an SBOM format ("spdx-json",
// "cyclonedx"); scan/trivy's Scanner is one.
type SBOMMaker interface {
	SBOM(ctx context.Context, idx v1.ImageIndex, format string) ([]byte, error)
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
	key := reportCacheVersion + "\x00" + d.String() + "\x00" + dbID
	if ci, ok := c.inner.(ConfigIdentifier); ok && ci.ConfigIdentity() != "" {
		key += "\x00" + ci.ConfigIdentity() // none: the keys entries had before
	}
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(c.dir, hex.EncodeToString(sum[:])+".json")
	if b, err := os.ReadFile(path); err == nil {
		var e cacheEntry
		if json.Unmarshal(b, &e) == nil && e.Version == reportCacheVersion && e.Report != nil && e.Report.Subject == d.String() {
			e.Report.TrivyReport = e.TrivyReport
			e.Report.Cached = true
			c.setSBOM(e.Report, idx)
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
	c.setSBOM(r, idx)
	return r, nil
}

// setSBOM lets r's SBOM report formats be made by the wrapped scanner, when
// it makes SBOMs and has not set Report.MakeSBOM itself.
func (c *cachedScanner) setSBOM(r *Report, idx v1.ImageIndex) {
	m, ok := c.inner.(SBOMMaker)
	if !ok || r.MakeSBOM != nil {
		return
	}
	r.MakeSBOM = func(ctx context.Context, f Format) ([]byte, error) { return m.SBOM(ctx, idx, string(f)) }
}
