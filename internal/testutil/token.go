package testutil

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenLeeway is the clock-skew allowance distribution adds to a token's
// exp (registry/auth/token.Leeway): a token is accepted until exp+60s.
const tokenLeeway = 60 * time.Second

// TokenServer is a Docker token-auth server (the "auth: token:" realm of
// docker-registry): it checks Basic credentials and issues ES256 JWTs,
// signed by a test key whose certificate chains to the bundle the registry
// trusts, granting the scopes asked for.
type TokenServer struct {
	// Issuer and Service are the registry config's issuer and service.
	Issuer, Service string
	// User and Password are the accepted credentials; anonymous requests
	// are refused with 401.
	User, Password string
	// Bundle is the path of the root certificate bundle for the registry.
	Bundle string

	mu       sync.Mutex
	lifetime time.Duration
	issued   int
	refused  int
	key      *ecdsa.PrivateKey
	leaf     []byte // DER
}

// NewTokenServer makes a token server for user/password whose tokens the
// registry accepts for lifetime (see SetLifetime).
func NewTokenServer(t testing.TB, user, password string, lifetime time.Duration) *TokenServer {
	t.Helper()
	caPEM, certPEM, keyPEM := NewTLSCert(t, "slipway-test-token-issuer")
	dir := t.TempDir()
	bundle := filepath.Join(dir, "token-ca.pem")
	if err := os.WriteFile(bundle, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &TokenServer{
		Issuer: "slipway-test-issuer", Service: "slipway-test-registry",
		User: user, Password: password, Bundle: bundle,
		lifetime: lifetime, key: key, leaf: cb.Bytes,
	}
}

// SetLifetime sets how long the registry accepts the tokens issued from
// now on. The exp claim is backdated by distribution's 60 s leeway, so a
// lifetime of 2s really means 2 s.
func (s *TokenServer) SetLifetime(d time.Duration) {
	s.mu.Lock()
	s.lifetime = d
	s.mu.Unlock()
}

// Issued and Refused count the token requests answered with a token and
// with 401.
func (s *TokenServer) Issued() (issued, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued, s.refused
}

// WithTokenAuth makes StartRegistry use token auth with s, realm being the
// token endpoint URL (typically a faultproxy's URL + faultproxy.TokenPath,
// on the same host:port clients reach the registry at).
func WithTokenAuth(s *TokenServer, realm string) RegistryOption {
	return func(c *registryConfig) {
		c.auth = fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			realm, s.Service, s.Issuer, s.Bundle)
	}
}

// ServeHTTP answers GET ?service=…&scope=repository:NAME:ACTIONS (the
// Docker token protocol).
func (s *TokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.User || pass != s.Password {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`)
		return
	}
	if svc := r.URL.Query().Get("service"); svc != s.Service {
		http.Error(w, "unknown service "+svc, http.StatusBadRequest)
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	grants := []access{}
	for _, scope := range r.URL.Query()["scope"] {
		for _, one := range strings.Fields(scope) {
			parts := strings.Split(one, ":")
			if len(parts) < 3 {
				continue
			}
			typ, actions := parts[0], parts[len(parts)-1]
			nm := strings.Join(parts[1:len(parts)-1], ":")
			grants = append(grants, access{Type: typ, Name: nm, Actions: strings.Split(actions, ",")})
		}
	}
	s.mu.Lock()
	lifetime := s.lifetime
	s.issued++
	n := s.issued
	s.mu.Unlock()
	now := time.Now()
	claims := map[string]any{
		"iss": s.Issuer, "sub": user, "aud": s.Service,
		"exp": now.Add(lifetime - tokenLeeway).Unix(), "nbf": now.Add(-time.Second).Unix(), "iat": now.Unix(),
		"jti": fmt.Sprintf("slipway-test-%d", n), "access": grants,
	}
	tok, err := s.sign(claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token": tok, "access_token": tok, "expires_in": int(lifetime / time.Second), "issued_at": now.UTC().Format(time.RFC3339),
	})
}

func (s *TokenServer) sign(claims map[string]any) (string, error) {
	hdr, err := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(s.leaf)}})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(signing))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig), nil
}
