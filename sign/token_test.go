package sign

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultTokenSource(t *testing.T) {
	const bearer, jwt = "request-secret", "header.payload.sig"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer "+bearer || r.URL.Query().Get("audience") != TokenAudience || r.URL.Query().Get("x") != "1" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		w.Write([]byte(`{"value":"` + jwt + `"}`))
	}))
	defer srv.Close()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		want, err  string
	}{
		{name: "file first", file: file, env: map[string]string{EnvSigstoreIDToken: "from-env"}, want: "from-file"},
		{name: "GitHub Actions", env: map[string]string{EnvActionsTokenURL: srv.URL + "/?x=1", EnvActionsTokenToken: bearer, EnvSigstoreIDToken: "from-env"}, want: jwt},
		{name: "GitHub Actions refuses", env: map[string]string{EnvActionsTokenURL: srv.URL + "/?x=1", EnvActionsTokenToken: "wrong"}, err: "403"},
		{name: "SIGSTORE_ID_TOKEN", env: map[string]string{EnvSigstoreIDToken: " from-env\n"}, want: "from-env"},
		{name: "none", env: map[string]string{}, err: "needs an identity token"},
		{name: "missing file", file: filepath.Join(t.TempDir(), "nope"), err: "reading identity token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DefaultTokenSource(tc.file, env(tc.env), srv.Client()).Token(context.Background())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Token() = %q, %v; want an error with %q", got, err, tc.err)
				}
				for _, secret := range []string{bearer, "wrong", jwt} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error %q quotes a secret", err)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Token() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestTokenIdentity(t *testing.T) {
	enc := func(s string) string { return "e30." + strings.TrimRight(b64url(s), "=") + ".sig" }
	iss, sub, err := tokenIdentity(enc(`{"iss":"https://i","sub":"123","email":"a@b"}`))
	if err != nil || iss != "https://i" || sub != "a@b" {
		t.Fatalf("tokenIdentity = %q %q %v", iss, sub, err)
	}
	if _, _, err := tokenIdentity(enc(`{"iss":"https://i","sub":"x","exp":1}`)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	if _, _, err := tokenIdentity("not-a-jwt-secret"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("garbage token: %v", err)
	}
}

func b64url(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }
