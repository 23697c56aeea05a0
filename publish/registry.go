package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Registry writes images to a container registry.
type Registry struct {
	keychain  authn.Keychain
	transport http.RoundTripper
	opts      []remote.Option
	progress  chan<- v1.Update
	userAgent string
	// pusher serves RemoteOptions, for reads and writes outside the
	// repositories this Registry pushes to.
	pusher *remote.Pusher
	// sessions holds one session per repository written to.
	mu       sync.Mutex
	sessions map[string]*session
	// raceBackoff spaces the retries of a raced manifest write.
	raceBackoff []time.Duration
}

// session is a run's one authenticated connection to a repository it
// writes: the push preflight, every blob, manifest, signature and tag
// write and every read of that repository share its transport, so the
// registry is pinged and a token fetched once per run, not once per
// go-containerregistry call.
type session struct {
	once   sync.Once
	err    error
	tr     http.RoundTripper // a *transport.Wrapper: authenticated, retrying
	pusher *remote.Pusher
	opts   []remote.Option // reuse tr, pusher and the session's puller
}

// Option configures NewRegistry.
type Option func(*Registry)

// WithKeychain sets where credentials come from. Default:
// authn.DefaultKeychain (Docker's config.json and credential helpers).
func WithKeychain(kc authn.Keychain) Option { return func(r *Registry) { r.keychain = kc } }

// WithTransport sets the HTTP transport. Default: remote.DefaultTransport.
func WithTransport(t http.RoundTripper) Option { return func(r *Registry) { r.transport = t } }

// WithRemoteOptions adds go-containerregistry options to every remote call
// (jobs, user agent, progress). Default: none.
func WithRemoteOptions(opts ...remote.Option) Option {
	return func(r *Registry) { r.opts = append(r.opts, opts...) }
}

// WithProgress reports upload progress, the byte counts of every write of
// this Registry, on ch. The caller closes ch once it has stopped writing.
// Default: no progress.
func WithProgress(ch chan<- v1.Update) Option {
	return func(r *Registry) { r.progress = ch }
}

// WithUserAgent sets the User-Agent of every request. Default: ggcr's.
func WithUserAgent(ua string) Option { return func(r *Registry) { r.userAgent = ua } }

// withRaceBackoff replaces the retry schedule of raced manifest writes
// (tests). Default: raceBackoff, about 4 s in all.
func withRaceBackoff(d ...time.Duration) Option { return func(r *Registry) { r.raceBackoff = d } }

// NewRegistry returns a Registry publisher, or an error for options that
// cannot work together.
func NewRegistry(opts ...Option) (*Registry, error) {
	r := &Registry{keychain: authn.DefaultKeychain, transport: remote.DefaultTransport, raceBackoff: raceBackoff, sessions: map[string]*session{}}
	for _, o := range opts {
		o(r)
	}
	switch {
	case r.keychain == nil:
		return nil, errors.New("registry publisher: nil keychain")
	case r.transport == nil:
		return nil, errors.New("registry publisher: nil transport")
	}
	r.transport = &manifestGuard{inner: &retryAfter{inner: r.transport, max: MaxRetryAfter}}
	popts := r.baseOptions()
	if r.progress != nil {
		popts = append(popts, remote.WithProgress(r.progress))
	}
	var err error
	if r.pusher, err = remote.NewPusher(popts...); err != nil {
		return nil, fmt.Errorf("registry publisher: %w", err)
	}
	return r, nil
}

func (r *Registry) baseOptions() []remote.Option {
	opts := []remote.Option{
		remote.WithRetryBackoff(retryBackoff),
		remote.WithAuthFromKeychain(r.keychain),
		remote.WithTransport(r.transport),
	}
	if r.userAgent != "" {
		opts = append(opts, remote.WithUserAgent(r.userAgent))
	}
	return append(opts, r.opts...)
}

// RemoteOptions are the options of every remote call made for ctx outside
// the repositories the Registry writes (bases, images to scan or verify).
func (r *Registry) RemoteOptions(ctx context.Context) []remote.Option {
	return append(r.baseOptions(), remote.WithContext(ctx), remote.Reuse(r.pusher))
}

// RepositoryOptions are the options of every remote call made for ctx to
// repo, which the Registry writes: they share repo's session (one ping,
// one token, one pusher and one puller for the run).
func (r *Registry) RepositoryOptions(ctx context.Context, repo name.Repository) ([]remote.Option, error) {
	s, err := r.session(ctx, repo)
	if err != nil {
		return nil, err
	}
	return s.options(ctx), nil
}

// RepositoryTransport is repo's session transport (authenticated for push
// and pull, with the session's retries and manifest gate), for requests
// go-containerregistry has no call for.
func (r *Registry) RepositoryTransport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	s, err := r.session(ctx, repo)
	if err != nil {
		return nil, err
	}
	return s.tr, nil
}

// options are the session's remote options for calls made for ctx (a
// fresh slice: callers run side by side).
func (s *session) options(ctx context.Context) []remote.Option {
	return slices.Concat(s.opts, []remote.Option{remote.WithContext(ctx)})
}

// session returns repo's session, opening it (ping, credentials, token
// for push and pull) on first use.
func (r *Registry) session(ctx context.Context, repo name.Repository) (*session, error) {
	r.mu.Lock()
	s := r.sessions[repo.Name()]
	if s == nil {
		s = &session{}
		r.sessions[repo.Name()] = s
	}
	r.mu.Unlock()
	s.once.Do(func() { s.err = r.open(ctx, repo, s) })
	return s, s.err
}

func (r *Registry) open(ctx context.Context, repo name.Repository, s *session) error {
	auth, err := authn.Resolve(ctx, r.keychain, repo)
	if err != nil {
		return fmt.Errorf("resolving credentials for %s: %w", repo, err)
	}
	// What go-containerregistry wraps around a plain transport (retries,
	// user agent), done here once: it leaves a *transport.Wrapper as it is.
	inner := transport.NewRetry(r.transport, transport.WithRetryBackoff(retryBackoff),
		transport.WithRetryPredicate(retryable), transport.WithRetryStatusCodes(transientStatuses...))
	if r.userAgent != "" {
		inner = transport.NewUserAgent(inner, r.userAgent)
	}
	inner = &manifestGate{inner: inner}
	s.tr, err = transport.NewWithContext(ctx, repo.Registry, auth, inner, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return fmt.Errorf("cannot push to %s: %w", repo, withStatus(err))
	}
	opts := append(r.baseOptions(), remote.WithTransport(s.tr))
	popts := opts
	if r.progress != nil {
		popts = slices.Concat(opts, []remote.Option{remote.WithProgress(r.progress)})
	}
	if s.pusher, err = remote.NewPusher(popts...); err != nil {
		return fmt.Errorf("registry publisher: %w", err)
	}
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return fmt.Errorf("registry publisher: %w", err)
	}
	s.opts = slices.Concat(opts, []remote.Option{remote.Reuse(s.pusher), remote.Reuse(puller)})
	return nil
}

// retryable is go-containerregistry's retry predicate (network flakes),
// for the session transports it does not wrap.
func retryable(err error) bool {
	var te interface{ Temporary() bool }
	return (errors.As(err, &te) && te.Temporary()) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// CheckPush checks, with one upload initiation that is cancelled at once,
// that repo's registry is reachable and accepts pushes with the
// configured credentials. Nothing is uploaded. Transient statuses (429,
// 5xx) are retried as for every other request. It opens repo's session.
func (r *Registry) CheckPush(ctx context.Context, repo name.Repository) error {
	s, err := r.session(ctx, repo)
	if err != nil {
		return err
	}
	if err := remote.CheckPushPermission(repo.Tag("slipway-push-check"), r.keychain, s.tr); err != nil {
		return fmt.Errorf("cannot push to %s: %w", repo, withStatus(err))
	}
	return nil
}

// WriteIndex writes idx to repo by digest, with no tag: blobs first (those
// the registry already has are skipped, base layers are mounted across
// repositories where possible), then each platform manifest, then the index.
func (r *Registry) WriteIndex(ctx context.Context, repo name.Repository, idx v1.ImageIndex) (name.Digest, error) {
	d, err := idx.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("computing digest: %w", err)
	}
	ref := repo.Digest(d.String())
	s, err := r.session(ctx, repo)
	if err != nil {
		return name.Digest{}, err
	}
	if err := retryRace(ctx, r.raceBackoff, func() error { return s.pusher.Push(ctx, ref, idx) }); err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", ref, withStatus(err))
	}
	return ref, nil
}

// Tag points each of tags at the manifest d, which must already be in the
// registry. Call it last, so a tag never names an incomplete image.
func (r *Registry) Tag(ctx context.Context, d name.Digest, tags []string) error {
	if len(tags) == 0 {
		return nil
	}
	s, err := r.session(ctx, d.Context())
	if err != nil {
		return err
	}
	opts := s.options(ctx)
	var desc *remote.Descriptor
	for _, t := range tags {
		tag := d.Context().Tag(t)
		// A tag that already names d stays as it is: one HEAD, no write.
		if h, err := remote.Head(tag, opts...); err == nil && h.Digest.String() == d.DigestStr() {
			continue
		}
		if desc == nil {
			// go-containerregistry checks that the bytes served for d hash
			// to d: a registry that holds something else fails here, untagged.
			if desc, err = remote.Get(d, opts...); err != nil {
				return fmt.Errorf("reading back %s before tagging: %w", d, withStatus(err))
			}
		}
		if err := retryRace(ctx, r.raceBackoff, func() error { return s.pusher.Push(ctx, tag, desc) }); err != nil {
			return fmt.Errorf("tagging %s: %w", tag, withStatus(err))
		}
	}
	return nil
}

// raceCodes are the errors distribution returns on a manifest PUT while
// another client writes the same blobs or manifests (its filesystem driver
// rewrites files in place, so a concurrent reader can see them missing or
// half-written). The content is ours and complete: the PUT is retried.
var raceCodes = map[transport.ErrorCode]bool{
	transport.ManifestBlobUnknownErrorCode: true,
	transport.BlobUnknownErrorCode:         true,
	transport.DigestInvalidErrorCode:       true,
}

// raceBackoff spaces the retries of a raced manifest write by default.
var raceBackoff = []time.Duration{200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}

// retryRace runs write, and again (a bounded number of times) while it
// fails with one of raceCodes in a 400 response. A registry that really
// lacks the blobs still fails, after about 4 s.
func retryRace(ctx context.Context, backoff []time.Duration, write func() error) error {
	err := write()
	for _, d := range backoff {
		if !isRace(err) {
			return err
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return err
		}
		err = write()
	}
	return err
}

func isRace(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusBadRequest || len(te.Errors) == 0 {
		return false
	}
	for _, d := range te.Errors {
		if !raceCodes[d.Code] {
			return false
		}
	}
	return true
}
