package sigstack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Audience is the audience Fulcio expects of identity tokens (its client ID).
const Audience = "sigstore"

// TokenLifetime is how long the tokens the issuer mints stay valid.
const TokenLifetime = 10 * time.Minute

// issuer is an OpenID Connect issuer: discovery, JWKS, ES256 tokens, and a
// fake GitHub Actions token endpoint in front of it.
type issuer struct {
	srv   *httptest.Server
	key   *ecdsa.PrivateKey
	point []byte
	kid   string
	// actionsToken is the bearer the Actions endpoint wants.
	actionsToken string
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// point is 0x04 || X || Y, 32 bytes each.
	point, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(point)
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, point: point, kid: hex.EncodeToString(sum[:8]), actionsToken: hex.EncodeToString(secret)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.discovery)
	mux.HandleFunc("GET /jwks", is.jwks)
	mux.HandleFunc("GET /actions/token", is.actions)
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) url() string { return is.srv.URL }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (is *issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                is.url(),
		"jwks_uri":                              is.url() + "/jwks",
		"authorization_endpoint":                is.url() + "/authorize",
		"token_endpoint":                        is.url() + "/token",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "email", "email_verified"},
	})
}

func (is *issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": is.kid,
		"x": b64(is.point[1:33]), "y": b64(is.point[33:65]),
	}}})
}

// actions is the token endpoint of GitHub Actions as cosign calls it:
// GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore with
// "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN", answering
// {"value": "<jwt>"}.
func (is *issuer) actions(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || subtle.ConstantTimeCompare([]byte(tok), []byte(is.actionsToken)) != 1 {
		http.Error(w, "bad bearer token", http.StatusUnauthorized)
		return
	}
	if aud := r.URL.Query()["audience"]; len(aud) != 1 || aud[0] != Audience {
		http.Error(w, "audience must be "+Audience, http.StatusBadRequest)
		return
	}
	email := r.URL.Query().Get("email")
	if email == "" {
		http.Error(w, "no email", http.StatusBadRequest)
		return
	}
	jwt, err := is.sign(is.claims(email))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]string{"value": jwt})
}

// claims are those of a token for email, valid for TokenLifetime.
func (is *issuer) claims(email string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":            is.url(),
		"sub":            email,
		"aud":            Audience,
		"email":          email,
		"email_verified": true,
		"iat":            now.Unix(),
		"nbf":            now.Add(-time.Minute).Unix(),
		"exp":            now.Add(TokenLifetime).Unix(),
	}
}

// sign returns claims as a compact JWS signed with ES256.
func (is *issuer) sign(claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": is.kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %w", err)
	}
	signed := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, is.key, sum[:])
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	// JWS ES256 signatures are r || s, 32 bytes each (RFC 7518 3.4).
	return signed + "." + b64(append(pad32(r), pad32(s)...)), nil
}

func pad32(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
