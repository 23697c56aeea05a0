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
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DBMediaType is the media type of the layer holding Trivy's DB
// (a gzipped tar of trivy.db and metadata.json).
const DBMediaType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"

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
