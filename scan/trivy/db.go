package trivy

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	bolt "go.etcd.io/bbolt"
)

// DBMediaType is the media type of the layer holding Trivy's DB
// (a gzipped tar of trivy.db and metadata.json).
const DBMediaType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"

// DBProblem says why a vulnerability DB cannot be used.
type DBProblem string

// DB problems.
const (
	DBMissing DBProblem = "missing"      // trivy.db or metadata.json absent
	DBInvalid DBProblem = "invalid"      // metadata unreadable or incomplete
	DBSchema  DBProblem = "wrong schema" // schema version other than the scanner's
	DBStale   DBProblem = "stale"        // older than the maximum age
)

// DBError is returned when the vulnerability DB is missing, invalid, of
// another schema version or older than the maximum age. Scans fail closed
// on it unless stale DBs are allowed (and then only for DBStale).
type DBError struct {
	Problem DBProblem
	// Dir is the DB directory (Trivy's cache dir holding db/).
	Dir string
	// SchemaVersion is the DB's schema version, Want the scanner's.
	SchemaVersion, Want int
	// UpdatedAt is when the DB was built; Age is its age at the check.
	UpdatedAt time.Time
	Age       time.Duration
	MaxAge    time.Duration
	Err       error
}

func (e *DBError) Error() string {
	switch e.Problem {
	case DBMissing:
		return fmt.Sprintf("vulnerability db missing in %s (run `slipway db pull`): %v", e.Dir, e.Err)
	case DBSchema:
		return fmt.Sprintf("vulnerability db in %s has schema version %d, want %d (run `slipway db pull`)",
			e.Dir, e.SchemaVersion, e.Want)
	case DBStale:
		return fmt.Sprintf("vulnerability db in %s is stale: updated %s ago (%s), max age %s (run `slipway db pull` or allow a stale db)",
			e.Dir, e.Age.Round(time.Minute), e.UpdatedAt.UTC().Format(time.RFC3339), e.MaxAge)
	}
	return fmt.Sprintf("vulnerability db in %s is invalid: %v", e.Dir, e.Err)
}

func (e *DBError) Unwrap() error { return e.Err }

// DBStatus describes the DB in a directory.
type DBStatus struct {
	// Dir is the directory (Trivy's cache layout: Dir/db/trivy.db).
	Dir           string
	SchemaVersion int
	UpdatedAt     time.Time
	NextUpdate    time.Time
	DownloadedAt  time.Time
	// Age is now minus UpdatedAt.
	Age time.Duration
}

// DefaultDBDir is where the DB is when scan.db.dir is not set: Trivy's
// default cache dir ($XDG_CACHE_HOME/trivy, usually ~/.cache/trivy), so
// slipway and the trivy CLI share one DB.
func DefaultDBDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("default cache dir: %w", err)
	}
	return filepath.Join(base, "trivy"), nil
}

// status reads the DB metadata in dir (Trivy's cache layout) as of now. It
// returns a *DBError when the DB is missing, unreadable or of another
// schema version; it does not judge the age.
func status(dir string, now time.Time) (DBStatus, error) {
	st := DBStatus{Dir: dir}
	if _, err := os.Stat(db.Path(filepath.Join(dir, "db"))); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, &DBError{Problem: DBMissing, Dir: dir, Err: err}
		}
		return st, &DBError{Problem: DBInvalid, Dir: dir, Err: err}
	}
	meta, err := metadata.NewClient(filepath.Join(dir, "db")).Get()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, &DBError{Problem: DBMissing, Dir: dir, Err: err}
		}
		return st, &DBError{Problem: DBInvalid, Dir: dir, Err: err}
	}
	st.SchemaVersion, st.UpdatedAt, st.NextUpdate, st.DownloadedAt = meta.Version, meta.UpdatedAt, meta.NextUpdate, meta.DownloadedAt
	if meta.Version != db.SchemaVersion {
		return st, &DBError{Problem: DBSchema, Dir: dir, SchemaVersion: meta.Version, Want: db.SchemaVersion}
	}
	if meta.UpdatedAt.IsZero() {
		return st, &DBError{Problem: DBInvalid, Dir: dir, Err: errors.New("metadata.json has no UpdatedAt")}
	}
	st.Age = now.Sub(meta.UpdatedAt)
	return st, nil
}

// checkDB applies the freshness policy: the DB's age is measured from
// UpdatedAt (when Trivy built it), not NextUpdate (a download hint that is
// always in the near future of UpdatedAt), so max age means what it says.
func checkDB(dir string, now time.Time, maxAge time.Duration, allowStale bool, log *slog.Logger) (DBStatus, error) {
	st, err := status(dir, now)
	if err != nil {
		return st, err
	}
	if maxAge > 0 && st.Age > maxAge {
		e := &DBError{Problem: DBStale, Dir: dir, SchemaVersion: st.SchemaVersion, Want: db.SchemaVersion,
			UpdatedAt: st.UpdatedAt, Age: st.Age, MaxAge: maxAge}
		if !allowStale {
			return st, e
		}
		log.Warn("using a stale vulnerability db", "dir", dir, "updated_at", st.UpdatedAt,
			"age", st.Age.Round(time.Minute).String(), "max_age", maxAge.String())
	}
	return st, nil
}

// Trivy's DB is a process-wide handle (trivy-db's db package). openDB keeps
// it open on one directory for as many scans as use it, and reopens it only
// when no scan holds it. It is opened read-only: bbolt then takes a shared
// lock, so any number of processes can read the same DB.
var (
	dbMu    sync.Mutex
	dbCond  = sync.NewCond(&dbMu)
	dbOpen  string
	dbUsers int
)

func openDB(dir string) (release func(), err error) {
	dbMu.Lock()
	defer dbMu.Unlock()
	for dbOpen != dir && dbUsers > 0 {
		dbCond.Wait()
	}
	if dbOpen != dir {
		if dbOpen != "" {
			_ = db.Close()
			dbOpen = ""
		}
		if err := db.Init(filepath.Join(dir, "db"), db.WithBoltOptions(&bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})); err != nil {
			return nil, &DBError{Problem: DBInvalid, Dir: dir, Err: err}
		}
		dbOpen = dir
	}
	dbUsers++
	var once sync.Once
	return func() {
		once.Do(func() {
			dbMu.Lock()
			dbUsers--
			dbCond.Broadcast()
			dbMu.Unlock()
		})
	}, nil
}

// PullOption configures Pull.
type PullOption func(*pullOptions)

type pullOptions struct {
	remote []remote.Option
	log    *slog.Logger
	now    func() time.Time
}

// WithRemoteOptions passes options (auth, transport, retries) to every
// registry request of Pull. Default: anonymous, http.DefaultTransport, two
// quick retries of 429/5xx before moving to the next repository.
func WithRemoteOptions(opts ...remote.Option) PullOption {
	return func(o *pullOptions) { o.remote = append(o.remote, opts...) }
}

// WithPullLogger logs each attempt and fallback. Default: discard.
func WithPullLogger(l *slog.Logger) PullOption {
	return func(o *pullOptions) { o.log = l }
}

// Pull downloads Trivy's DB artifact into dir (Trivy's cache layout:
// dir/db/trivy.db, dir/db/metadata.json), trying repositories in order and
// moving to the next one when a repository is unreachable or answers 429 or
// 5xx. Any other failure (not found, denied, a corrupt or wrong artifact)
// stops the pull: it is a configuration problem a mirror would only hide.
// Only the given repositories are contacted, never Trivy's public defaults.
// The new DB replaces the old one atomically; on failure the old one stays.
// A repository without tag or digest gets the schema version as tag (":2").
func Pull(ctx context.Context, dir string, repositories []string, opts ...PullOption) (DBStatus, error) {
	o := pullOptions{log: discard(), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if len(repositories) == 0 {
		return DBStatus{}, errors.New("pulling vulnerability db: no repositories configured")
	}
	refs := make([]name.Reference, 0, len(repositories))
	for _, r := range repositories {
		ref, err := parseDBRepository(r)
		if err != nil {
			return DBStatus{}, err
		}
		refs = append(refs, ref)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return DBStatus{}, fmt.Errorf("pulling vulnerability db: %w", err)
	}
	var errs []error
	for _, ref := range refs {
		o.log.Info("pulling vulnerability db", "repository", ref.String())
		err := pullOne(ctx, dir, ref, o)
		if err == nil {
			st, err := status(dir, o.now())
			if err != nil {
				return st, fmt.Errorf("pulled vulnerability db from %s: %w", ref, err)
			}
			o.log.Info("pulled vulnerability db", "repository", ref.String(), "updated_at", st.UpdatedAt)
			return st, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ref, err))
		if ctx.Err() != nil || !retryElsewhere(err) {
			return DBStatus{}, fmt.Errorf("pulling vulnerability db: %w", errors.Join(errs...))
		}
		o.log.Warn("vulnerability db repository failed, trying the next", "repository", ref.String(), "error", err)
	}
	return DBStatus{}, fmt.Errorf("pulling vulnerability db: every repository failed: %w", errors.Join(errs...))
}

func parseDBRepository(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("parsing db repository %q: %w", s, err)
	}
	// name.ParseReference defaults to ":latest"; Trivy's DB is tagged with
	// its schema version.
	if t, ok := ref.(name.Tag); ok && !hasExplicitTag(s) {
		return t.Context().Tag(fmt.Sprint(db.SchemaVersion)), nil
	}
	return ref, nil
}

func hasExplicitTag(s string) bool {
	slash := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			slash = i
			break
		}
	}
	for i := len(s) - 1; i > slash; i-- {
		if s[i] == ':' || s[i] == '@' {
			return true
		}
	}
	return false
}

// retryElsewhere reports whether err means "this repository is unavailable
// now" (429, 5xx, unreachable) rather than "this request is wrong".
func retryElsewhere(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode == http.StatusTooManyRequests || terr.StatusCode >= 500
	}
	var nerr net.Error
	var uerr *url.Error
	var operr *net.OpError
	return errors.As(err, &nerr) || errors.As(err, &uerr) || errors.As(err, &operr) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

const maxDBSize = 4 << 30 // the real DB is ~1 GiB uncompressed

func pullOne(ctx context.Context, dir string, ref name.Reference, o pullOptions) error {
	ropts := append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	}, o.remote...)
	img, err := remote.Image(ref, ropts...)
	if err != nil {
		return fmt.Errorf("fetching manifest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	if len(layers) != 1 {
		return fmt.Errorf("db artifact has %d layers, want 1", len(layers))
	}
	mt, err := layers[0].MediaType()
	if err != nil {
		return fmt.Errorf("reading layer media type: %w", err)
	}
	if mt != DBMediaType {
		return fmt.Errorf("db artifact layer has media type %s, want %s", mt, DBMediaType)
	}
	rc, err := layers[0].Compressed() // ggcr verifies the digest on read
	if err != nil {
		return fmt.Errorf("fetching db layer: %w", err)
	}
	defer rc.Close()

	tmp, err := os.MkdirTemp(dir, ".db-pull-*")
	if err != nil {
		return fmt.Errorf("creating temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	newDB := filepath.Join(tmp, "db")
	if err := os.Mkdir(newDB, 0o755); err != nil {
		return err
	}
	if err := extractDB(rc, newDB); err != nil {
		return err
	}
	// Validate before installing: a DB of another schema must not replace a
	// working one.
	st, err := status(tmp, o.now())
	if err != nil {
		return fmt.Errorf("downloaded db unusable: %w", err)
	}
	meta := metadata.Metadata{Version: st.SchemaVersion, UpdatedAt: st.UpdatedAt, NextUpdate: st.NextUpdate, DownloadedAt: o.now().UTC()}
	if err := metadata.NewClient(newDB).Update(meta); err != nil {
		return fmt.Errorf("writing metadata: %w", err)
	}
	return installDir(newDB, filepath.Join(dir, "db"))
}

// extractDB writes the regular files trivy.db and metadata.json of a
// gzipped tar to dst and rejects anything else that would be written.
func extractDB(r io.Reader, dst string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("db layer: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("db layer: %w", err)
		}
		name := filepath.Clean(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || (name != "trivy.db" && name != "metadata.json") {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dst, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("db layer: %w", err)
		}
		n, err := io.Copy(f, io.LimitReader(tr, maxDBSize+1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("db layer: extracting %s: %w", name, err)
		}
		if n > maxDBSize {
			return fmt.Errorf("db layer: %s larger than %d bytes", name, int64(maxDBSize))
		}
		seen[name] = true
	}
	if !seen["trivy.db"] || !seen["metadata.json"] {
		return errors.New("db layer lacks trivy.db or metadata.json")
	}
	return nil
}

// installDir replaces dst by src with two renames; readers that opened the
// old trivy.db keep their file.
func installDir(src, dst string) error {
	old := dst + ".old"
	_ = os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("installing db: %w", err)
	}
	if err := os.Rename(src, dst); err != nil {
		_ = os.Rename(old, dst)
		return fmt.Errorf("installing db: %w", err)
	}
	_ = os.RemoveAll(old)
	return nil
}
