package trivy

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	bolt "go.etcd.io/bbolt"
)

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
	pull := "run `slipway db pull`"
	if strings.HasPrefix(e.Dir, "http://") || strings.HasPrefix(e.Dir, "https://") {
		pull = "update the trivy server's DB" // scan.server
	}
	switch e.Problem {
	case DBMissing:
		return fmt.Sprintf("vulnerability db missing in %s (%s): %v", e.Dir, pull, e.Err)
	case DBSchema:
		return fmt.Sprintf("vulnerability db in %s has schema version %d, want %d (%s)",
			e.Dir, e.SchemaVersion, e.Want, pull)
	case DBStale:
		return fmt.Sprintf("vulnerability db in %s is stale: updated %s ago (%s), max age %s (%s or allow a stale db)",
			e.Dir, e.Age.Round(time.Minute), e.UpdatedAt.UTC().Format(time.RFC3339), e.MaxAge, pull)
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

// DefaultCacheDir is where per-layer results are kept when scan.cache_dir
// is not set: $XDG_CACHE_HOME/slipway/scan.
func DefaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("default cache dir: %w", err)
	}
	return filepath.Join(base, "slipway", "scan"), nil
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
	return st, judgeAge(st, now, maxAge, allowStale, log)
}

// judgeAge fails a DB older than maxAge (a *DBError), unless stale DBs are
// allowed: then it warns. st.Dir names the DB (a directory or a server).
func judgeAge(st DBStatus, now time.Time, maxAge time.Duration, allowStale bool, log *slog.Logger) error {
	if maxAge > 0 && st.Age > maxAge {
		e := &DBError{Problem: DBStale, Dir: st.Dir, SchemaVersion: st.SchemaVersion, Want: db.SchemaVersion,
			UpdatedAt: st.UpdatedAt, Age: st.Age, MaxAge: maxAge}
		if !allowStale {
			return e
		}
		log.Warn("using a stale vulnerability db", "dir", st.Dir, "updated_at", st.UpdatedAt,
			"age", st.Age.Round(time.Minute).String(), "max_age", maxAge.String())
	}
	return nil
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
