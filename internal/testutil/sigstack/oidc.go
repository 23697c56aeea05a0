package sigstack

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
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

// issuer is an OpenID Connect issuer: discovery, JWKS, RS256 tokens, and a
// fake GitHub Actions token endpoint in front of it. RS256, as GitHub's
// and Google's tokens: cosign takes --identity-token as a raw token only
// when it parses as RS256 (else it reads it as a file name).
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string
	// actionsToken is the bearer the Actions endpoint wants.
	actionsToken string
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(key.N.Bytes())
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, kid: hex.EncodeToString(sum[:8]), actionsToken: hex.EncodeToString(secret)}
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
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "email", "email_verified"},
	})
}

func (is *issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": is.kid,
		"n": b64(is.key.N.Bytes()), "e": b64(big.NewInt(int64(is.key.E)).Bytes()),
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

// sign returns claims as a compact JWS signed with RS256.
func (is *issuer) sign(claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": is.kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %w", err)
	}
	signed := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, is.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return signed + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
