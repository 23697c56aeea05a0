package sigstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/slipway-build/slipway/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.IsolateNetwork(m)) }

// TestIsolated checks IsolateNetwork: only loopback here, and public
// addresses are unreachable.
func TestIsolated(t *testing.T) {
	if !testutil.Isolated() {
		t.Fatal("not isolated")
	}
	testutil.NoRoute(t)
}

// TestIssuer verifies the issuer's tokens with go-oidc (discovery, JWKS,
// RS256, audience, expiry, as Fulcio does) and checks the fake GitHub
// Actions endpoint, the way cosign calls it.
func TestIssuer(t *testing.T) {
	is := newIssuer(t)
	s := &Stack{IssuerURL: is.url(), issuer: is}
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, s.IssuerURL)
	if err != nil {
		t.Fatal(err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: Audience})
	email := "dev@example.com"

	checkToken := func(t *testing.T, raw string) {
		t.Helper()
		tok, err := verifier.Verify(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Email    string `json:"email"`
			Verified bool   `json:"email_verified"`
		}
		if err := tok.Claims(&c); err != nil {
			t.Fatal(err)
		}
		if tok.Subject != email || c.Email != email || !c.Verified {
			t.Fatalf("sub %q email %q verified %v, want %q verified", tok.Subject, c.Email, c.Verified, email)
		}
		if exp := time.Until(tok.Expiry); exp <= 0 || exp > TokenLifetime {
			t.Fatalf("expires in %v, want within %v", exp, TokenLifetime)
		}
	}
	t.Run("token", func(t *testing.T) { checkToken(t, s.Token(t, email)) })

	t.Run("refused", func(t *testing.T) {
		wrongAud := s.Claims(email)
		wrongAud["aud"] = "other"
		expired := s.Claims(email)
		expired["exp"] = time.Now().Add(-time.Minute).Unix()
		other := newIssuer(t)
		foreign, err := other.sign(other.claims(email))
		if err != nil {
			t.Fatal(err)
		}
		for name, raw := range map[string]string{
			"audience": s.SignToken(t, wrongAud),
			"expired":  s.SignToken(t, expired),
			// Another issuer's token: other iss, other key.
			"foreign": foreign,
			// This issuer's claims, another issuer's key.
			"key": func() string { j, _ := other.sign(s.Claims(email)); return j }(),
		} {
			if _, err := verifier.Verify(ctx, raw); err == nil {
				t.Errorf("%s: token accepted", name)
			}
		}
	})

	t.Run("actions", func(t *testing.T) {
		env := s.GitHubActionsEnv(email)
		get := func(audience, bearer string) (int, string) {
			req, err := http.NewRequest(http.MethodGet, env["ACTIONS_ID_TOKEN_REQUEST_URL"]+"&audience="+audience, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "bearer "+bearer)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, string(body)
		}
		code, body := get(Audience, env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		var v struct{ Value string }
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		checkToken(t, v.Value)
		if code, _ := get(Audience, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("wrong bearer: status %d, want 401", code)
		}
		if code, _ := get("other", env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]); code != http.StatusBadRequest {
			t.Errorf("other audience: status %d, want 400", code)
		}
	})
}

// cosign runs a cosign peer with HOME and TUF_ROOT in temporary
// directories and env added, and returns its combined output.
func cosign(t *testing.T, bin, dir string, env map[string]string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = []string{"HOME=" + home, "TUF_ROOT=" + filepath.Join(home, "tuf"), "PATH=" + os.Getenv("PATH"), "TMPDIR=" + home}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCosignSignBlobKeyless signs a blob with cosign v3, keyless, against
// the stack (Fulcio certificate, RFC 3161 timestamp, no tlog), and verifies
// it with cosign v3 against the stack's trusted root: the right identity
// passes, a wrong identity, a wrong issuer and a changed blob fail.
func TestCosignSignBlobKeyless(t *testing.T) {
	cosignBin := testutil.Peer(t, "cosign-v3")
	s := Start(t)
	dir := t.TempDir()
	blob := filepath.Join(dir, "blob.txt")
	if err := os.WriteFile(blob, []byte("slipway sigstack\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	email := "signer@example.com"
	bundle := filepath.Join(dir, "blob.sigstore.json")
	// The token in a file (cosign reads --identity-token as a token or a
	// path), so that it is in no command line.
	tok := s.Token(t, email)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cosign(t, cosignBin, dir, nil, "sign-blob", "--yes", "--bundle", bundle,
		"--signing-config", s.SigningConfigPath, "--trusted-root", s.TrustedRootPath,
		"--identity-token", tokFile, blob)
	if strings.Contains(out, tok) {
		out = strings.ReplaceAll(out, tok, "<token>")
		t.Errorf("cosign printed the identity token")
	}
	if err != nil {
		t.Fatalf("cosign sign-blob: %v\n%s", err, out)
	}
	var b struct {
		VerificationMaterial struct {
			Certificate               json.RawMessage `json:"certificate"`
			TimestampVerificationData struct {
				RFC3161Timestamps []json.RawMessage `json:"rfc3161Timestamps"`
			} `json:"timestampVerificationData"`
			TlogEntries []json.RawMessage `json:"tlogEntries"`
		} `json:"verificationMaterial"`
	}
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	vm := b.VerificationMaterial
	if len(vm.Certificate) == 0 || len(vm.TimestampVerificationData.RFC3161Timestamps) != 1 || len(vm.TlogEntries) != 0 {
		t.Fatalf("bundle: want a certificate, one RFC 3161 timestamp and no tlog entry:\n%s", data)
	}

	verify := func(identity, issuer, file string) (string, error) {
		return cosign(t, cosignBin, dir, nil, "verify-blob", "--bundle", bundle, "--trusted-root", s.TrustedRootPath,
			"--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
			"--use-signed-timestamps", "--insecure-ignore-tlog", "--insecure-ignore-sct", file)
	}
	if out, err := verify(email, s.IssuerURL, blob); err != nil {
		t.Fatalf("cosign verify-blob: %v\n%s", err, out)
	}
	other := filepath.Join(dir, "other.txt")
	if err := os.WriteFile(other, []byte("something else\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][3]string{
		"identity": {"other@example.com", s.IssuerURL, blob},
		"issuer":   {email, "https://accounts.google.com", blob},
		"blob":     {email, s.IssuerURL, other},
	} {
		if out, err := verify(args[0], args[1], args[2]); err == nil {
			t.Errorf("wrong %s: cosign verify-blob accepted:\n%s", name, out)
		} else {
			t.Logf("wrong %s: refused: %s", name, lastLine(out))
		}
	}
}

// TestCosignGitHubActions signs with cosign v3 as in a GitHub Actions job:
// no --identity-token, cosign fetches the token from the fake Actions
// endpoint; the certificate names the identity the endpoint vouched for.
func TestCosignGitHubActions(t *testing.T) {
	cosignBin := testutil.Peer(t, "cosign-v3")
	s := Start(t)
	dir := t.TempDir()
	blob := filepath.Join(dir, "blob.txt")
	if err := os.WriteFile(blob, []byte("slipway sigstack actions\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	email := "ci@example.com"
	bundle := filepath.Join(dir, "blob.sigstore.json")
	env := s.GitHubActionsEnv(email)
	out, err := cosign(t, cosignBin, dir, env, "sign-blob", "--yes", "--bundle", bundle,
		"--signing-config", s.SigningConfigPath, "--trusted-root", s.TrustedRootPath, blob)
	if err != nil {
		t.Fatalf("cosign sign-blob: %v\n%s", err, out)
	}
	if out, err := cosign(t, cosignBin, dir, nil, "verify-blob", "--bundle", bundle, "--trusted-root", s.TrustedRootPath,
		"--certificate-identity", email, "--certificate-oidc-issuer", s.IssuerURL,
		"--use-signed-timestamps", "--insecure-ignore-tlog", "--insecure-ignore-sct", blob); err != nil {
		t.Fatalf("cosign verify-blob: %v\n%s", err, out)
	}

	// A wrong request token: cosign gets no identity token and fails.
	env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "wrong"
	if out, err := cosign(t, cosignBin, dir, env, "sign-blob", "--yes", "--bundle", filepath.Join(dir, "b2.json"),
		"--signing-config", s.SigningConfigPath, "--trusted-root", s.TrustedRootPath, blob); err == nil {
		t.Fatalf("cosign sign-blob with a wrong Actions request token succeeded:\n%s", out)
	} else {
		t.Logf("wrong request token: refused: %s", lastLine(out))
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return fmt.Sprint(s)
}

// TestIsolateNetworkFallback runs this test binary again where no network
// namespace can be made (no unshare on PATH): with SLIPWAY_REQUIRE_TOOLS
// the run fails, without it no test runs; never with the network.
func TestIsolateNetworkFallback(t *testing.T) {
	for _, require := range []string{"1", ""} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIsolated$", "-test.v")
		cmd.Env = []string{"PATH=/nonexistent", "SLIPWAY_REQUIRE_TOOLS=" + require, "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		switch {
		case require != "" && (err == nil || !strings.Contains(string(out), "FAIL: cannot make a loopback-only network namespace")):
			t.Errorf("SLIPWAY_REQUIRE_TOOLS=1: %v, want a failure:\n%s", err, out)
		case require == "" && (err != nil || strings.Contains(string(out), "=== RUN") || !strings.Contains(string(out), "no tests to run")):
			t.Errorf("without SLIPWAY_REQUIRE_TOOLS: %v, want no test run:\n%s", err, out)
		}
	}
}

// TestTwoStacks starts two stacks in one process: each has its own issuer
// and Fulcio CA, they share the timestamp server, and each trusted root
// loads.
func TestTwoStacks(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.IssuerURL == b.IssuerURL || a.FulcioURL == b.FulcioURL || a.FulcioRoot.Equal(b.FulcioRoot) {
		t.Errorf("stacks share an issuer or a Fulcio: %s %s, %s %s", a.IssuerURL, b.IssuerURL, a.FulcioURL, b.FulcioURL)
	}
	if a.TSAURL != b.TSAURL || !a.TSARoot.Equal(b.TSARoot) {
		t.Errorf("stacks do not share the timestamp server: %s %s", a.TSAURL, b.TSAURL)
	}
	for _, s := range []*Stack{a, b} {
		tr, err := root.NewTrustedRootFromPath(s.TrustedRootPath)
		if err != nil {
			t.Fatal(err)
		}
		cas := tr.FulcioCertificateAuthorities()
		if len(cas) != 1 || !cas[0].(*root.FulcioCertificateAuthority).Root.Equal(s.FulcioRoot) {
			t.Errorf("%s: trusted root CA is not its Fulcio's root", s.TrustedRootPath)
		}
		sc, err := root.NewSigningConfigFromPath(s.SigningConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		if got := sc.FulcioCertificateAuthorityURLs(); len(got) != 1 || got[0].URL != s.FulcioURL {
			t.Errorf("signing config CA URLs %v, want %s", got, s.FulcioURL)
		}
		if got := sc.TimestampAuthorityURLs(); len(got) != 1 || got[0].URL != s.TSAURL {
			t.Errorf("signing config TSA URLs %v, want %s", got, s.TSAURL)
		}
		if len(sc.RekorLogURLs()) != 0 {
			t.Errorf("signing config names a Rekor: %v", sc.RekorLogURLs())
		}
	}
}

// TestCosignSignImageKeyless signs an image in Debian's docker-registry
// (started in the same namespace) with cosign v3, keyless, and verifies it
// with cosign v3 against the stack's trusted root; a wrong identity fails.
func TestCosignSignImageKeyless(t *testing.T) {
	cosignBin := testutil.Peer(t, "cosign-v3")
	reg := testutil.StartRegistry(t)
	s := Start(t)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(reg.Host + "/sigstack/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := tag.Context().Digest(d.String()).String()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(s.Token(t, "img@example.com")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cosign(t, cosignBin, dir, nil, "sign", "--yes", "--signing-config", s.SigningConfigPath,
		"--trusted-root", s.TrustedRootPath, "--identity-token", tokFile, ref); err != nil {
		t.Fatalf("cosign sign: %v\n%s", err, out)
	}
	verify := func(identity string) (string, error) {
		return cosign(t, cosignBin, dir, nil, "verify", "--trusted-root", s.TrustedRootPath,
			"--certificate-identity", identity, "--certificate-oidc-issuer", s.IssuerURL,
			"--insecure-ignore-tlog", "--insecure-ignore-sct", ref)
	}
	if out, err := verify("img@example.com"); err != nil {
		t.Fatalf("cosign verify: %v\n%s", err, out)
	}
	if out, err := verify("other@example.com"); err == nil {
		t.Fatalf("cosign verify accepted a wrong identity:\n%s", out)
	} else {
		t.Logf("wrong identity: refused: %s", lastLine(out))
	}
}
