package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
)

// Public-good Sigstore instances: the defaults for keyless signing, used
// only when keyless signing is configured.
const (
	PublicFulcioURL = "https://fulcio.sigstore.dev"
	PublicRekorURL  = "https://rekor.sigstore.dev"
)

// serviceTimeout bounds one request to Fulcio, Rekor or a TSA.
const serviceTimeout = 30 * time.Second

// Services are the Sigstore services bundles are made with. All are
// optional with a key; keyless signing needs a Fulcio URL, a trusted root
// and a transparency log or a timestamp authority (a Fulcio certificate
// lives 10 minutes: without a logged or timestamped signing time it cannot
// be verified after that).
type Services struct {
	// FulcioURL is the certificate authority for keyless signing.
	FulcioURL string
	// RekorURL, when set, gets every bundle a transparency-log entry
	// (Rekor's v1 API).
	RekorURL string
	// TimestampURL, when set, gets every bundle an RFC 3161 timestamp:
	// the full URL ("https://tsa.example/api/v1/timestamp").
	TimestampURL string
	// Transparency, when set, is used instead of RekorURL (tests use
	// sigstore-go's virtual Sigstore here).
	Transparency sgsign.Transparency
	// TrustedRoot verifies every keyless bundle right after it is made,
	// so a certificate or timestamp the verifiers will refuse is caught
	// before anything is written.
	TrustedRoot root.TrustedMaterial
	// Transport carries the requests (default http.DefaultTransport).
	Transport http.RoundTripper

	keyless *keylessState
}

// hasLog reports whether bundles get a transparency-log entry.
func (sv *Services) hasLog() bool { return sv.RekorURL != "" || sv.Transparency != nil }

func (sv *Services) keylessReady() error {
	switch {
	case sv.FulcioURL == "":
		return errors.New("keyless signing needs a Fulcio URL")
	case sv.TrustedRoot == nil:
		return errors.New("keyless signing needs a trusted root (trusted_root, or the public-good instance's)")
	case !sv.hasLog() && sv.TimestampURL == "":
		return errors.New("keyless signing needs a transparency log or a timestamp authority: a Fulcio certificate expires after 10 minutes, and without a logged or timestamped signing time nobody can verify it afterwards")
	}
	return nil
}

func (sv *Services) setKeyless(k *Keyless) error {
	if k.Token == nil {
		return errors.New("keyless signing needs an identity token source")
	}
	sv.keyless = &keylessState{cfg: k, cert: &onceCertificate{p: sgsign.NewFulcio(&sgsign.FulcioOptions{
		BaseURL: strings.TrimSuffix(sv.FulcioURL, "/"), Timeout: serviceTimeout, Retries: 1, Transport: sv.Transport,
	})}}
	return nil
}

// bundleOptions are sigstore-go's options for one bundle.
func (sv *Services) bundleOptions(ctx context.Context) sgsign.BundleOptions {
	o := sgsign.BundleOptions{Context: ctx}
	if sv.TimestampURL != "" {
		o.TimestampAuthorities = []*sgsign.TimestampAuthority{sgsign.NewTimestampAuthority(&sgsign.TimestampAuthorityOptions{
			URL: sv.TimestampURL, Timeout: serviceTimeout, Retries: 1, Transport: sv.Transport,
		})}
	}
	switch {
	case sv.Transparency != nil:
		o.TransparencyLogs = []sgsign.Transparency{sv.Transparency}
	case sv.RekorURL != "":
		o.TransparencyLogs = []sgsign.Transparency{sgsign.NewRekor(&sgsign.RekorOptions{
			BaseURL: strings.TrimSuffix(sv.RekorURL, "/"), Timeout: serviceTimeout, Retries: 1,
		})}
	}
	if k := sv.keyless; k != nil {
		o.CertificateProvider = k.cert
		o.CertificateProviderOptions = &sgsign.CertificateProviderOptions{IDToken: k.token}
		o.TrustedRoot = sv.TrustedRoot
	}
	return o
}

// Keyless configures keyless signing.
type Keyless struct {
	// Token gives the OIDC identity token Fulcio certifies.
	Token TokenSource
}

// keylessState is one run's keyless signing: the token, fetched once, and
// the certificate, asked for once.
type keylessState struct {
	cfg   *Keyless
	token string
	id    string
	cert  *onceCertificate
}

// start fetches the identity token (once) and returns the identity it
// names ("issuer subject"), for logs and referrer annotations. The token
// itself is never logged or returned.
func (k *keylessState) start(ctx context.Context) (string, error) {
	if k.token != "" {
		return k.id, nil
	}
	tok, err := k.cfg.Token.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("getting identity token: %w", err)
	}
	iss, sub, err := tokenIdentity(tok)
	if err != nil {
		return "", err
	}
	k.token, k.id = tok, iss+" "+sub
	return k.id, nil
}

// tokenIdentity reads the issuer and the subject (the email claim when
// present, as Fulcio certifies it, else sub) of a JWT without verifying it
// (Fulcio verifies it). Errors never quote the token.
func tokenIdentity(tok string) (issuer, subject string, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", "", errors.New("identity token is not a JWT")
	}
	body, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", "", errors.New("identity token: payload is not base64url")
	}
	var c struct {
		Iss   string `json:"iss"`
		Sub   string `json:"sub"`
		Email string `json:"email"`
		Exp   int64  `json:"exp"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return "", "", errors.New("identity token: payload is not JSON")
	}
	if c.Iss == "" {
		return "", "", errors.New("identity token has no issuer")
	}
	if c.Exp != 0 && time.Unix(c.Exp, 0).Before(time.Now()) {
		return "", "", fmt.Errorf("identity token from %s expired at %s", c.Iss, time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	}
	if c.Email != "" {
		return c.Iss, c.Email, nil
	}
	if c.Sub == "" {
		return "", "", errors.New("identity token has no subject")
	}
	return c.Iss, c.Sub, nil
}

// LoadTrustedRoot reads a Sigstore trusted_root.json (what `cosign
// --trusted-root` and sigstore-go take).
func LoadTrustedRoot(path string) (*root.TrustedRoot, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading trusted root: %w", err)
	}
	tr, err := root.NewTrustedRootFromJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing trusted root %s: %w", path, err)
	}
	return tr, nil
}

// PublicGoodTrustedRoot fetches the public-good instance's trusted root
// through Sigstore's TUF repository (tuf-repo-cdn.sigstore.dev), cached
// in ~/.sigstore as sigstore-go does. Called only when keyless signing or
// keyless verification is configured without a trusted_root file.
func PublicGoodTrustedRoot() (*root.TrustedRoot, error) {
	tr, err := root.FetchTrustedRoot()
	if err != nil {
		return nil, fmt.Errorf("fetching the public-good Sigstore trusted root over TUF: %w", err)
	}
	return tr, nil
}

// SigningConfig is the part of a Sigstore signing config slipway uses: the
// service URLs valid now.
type SigningConfig struct {
	FulcioURL    string
	RekorURL     string
	TimestampURL string
}

// LoadSigningConfig reads a Sigstore signing_config.json (v0.2, as
// `cosign signing-config create` writes) and picks, for each service,
// the one valid now with an API version slipway speaks.
func LoadSigningConfig(path string, now time.Time) (*SigningConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing config: %w", err)
	}
	sc, err := root.NewSigningConfigFromJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing signing config %s: %w", path, err)
	}
	out := &SigningConfig{}
	if svcs := sc.FulcioCertificateAuthorityURLs(); len(svcs) > 0 {
		u, err := root.SelectService(svcs, sgsign.FulcioAPIVersions, now)
		if err != nil {
			return nil, fmt.Errorf("signing config %s: Fulcio: %w", path, err)
		}
		out.FulcioURL = u.URL
	}
	if svcs := sc.RekorLogURLs(); len(svcs) > 0 {
		u, err := root.SelectService(svcs, []uint32{1}, now)
		if err != nil {
			return nil, fmt.Errorf("signing config %s: Rekor (slipway speaks Rekor's v1 API): %w", path, err)
		}
		out.RekorURL = u.URL
	}
	if svcs := sc.TimestampAuthorityURLs(); len(svcs) > 0 {
		u, err := root.SelectService(svcs, sgsign.TimestampAuthorityAPIVersions, now)
		if err != nil {
			return nil, fmt.Errorf("signing config %s: timestamp authority: %w", path, err)
		}
		out.TimestampURL = u.URL
	}
	return out, nil
}
