package sign

import (
	"log/slog"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Option configures NewKeyed, Verify and VerifyBase.
type Option func(*options)

type options struct {
	log         *slog.Logger
	remote      []remote.Option
	now         func() time.Time
	maxSigBytes int64
	maxAttBytes int64
}

// Default bounds on what Verify reads from a registry.
const (
	// MaxSignatures is the most signature (or attestation) layers Verify
	// reads from one tag; more is a policy denial.
	MaxSignatures = 100
	// DefaultMaxSignatureBytes bounds one simple-signing payload.
	DefaultMaxSignatureBytes = 1 << 20
	// DefaultMaxAttestationBytes bounds one DSSE attestation envelope
	// (SBOMs of large images run to megabytes).
	DefaultMaxAttestationBytes = 16 << 20
)

func makeOptions(opts []Option) *options {
	o := &options{
		log:         slog.New(slog.DiscardHandler),
		now:         time.Now,
		maxSigBytes: DefaultMaxSignatureBytes,
		maxAttBytes: DefaultMaxAttestationBytes,
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithLogger sets the logger (default: discard). Nothing secret is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithRemoteOptions sets the go-containerregistry options used for registry
// access by Verify and VerifyBase: authentication, transport, platform
// (default: none, i.e. anonymous access over http.DefaultTransport).
func WithRemoteOptions(opts ...remote.Option) Option {
	return func(o *options) { o.remote = append(o.remote, opts...) }
}

// WithPayloadLimits sets the largest signature payload and attestation
// envelope Verify reads, in bytes (defaults: DefaultMaxSignatureBytes and
// DefaultMaxAttestationBytes). A larger layer is a policy denial. Values
// <= 0 keep the default.
func WithPayloadLimits(signature, attestation int64) Option {
	return func(o *options) {
		if signature > 0 {
			o.maxSigBytes = signature
		}
		if attestation > 0 {
			o.maxAttBytes = attestation
		}
	}
}

// withClock sets the clock policy ages are measured with (tests).
func withClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}
