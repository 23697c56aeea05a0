package sign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// TokenSource gives an OIDC identity token for keyless signing.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Environment variables identity tokens are read from, as cosign reads
// them.
const (
	EnvActionsTokenURL   = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvActionsTokenToken = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
	EnvSigstoreIDToken   = "SIGSTORE_ID_TOKEN"
)

// TokenAudience is the audience Fulcio accepts.
const TokenAudience = "sigstore"

// maxTokenBytes bounds a token file or token response.
const maxTokenBytes = 64 << 10

// DefaultTokenSource finds the identity token the way CI systems hand it
// out: the file, when one is configured; else GitHub Actions' token
// endpoint (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN, audience sigstore);
// else $SIGSTORE_ID_TOKEN. getenv is os.Getenv when nil; client is
// http.DefaultClient when nil.
func DefaultTokenSource(file string, getenv func(string) string, client *http.Client) TokenSource {
	if getenv == nil {
		getenv = os.Getenv
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &defaultTokenSource{file: file, getenv: getenv, client: client}
}

type defaultTokenSource struct {
	file   string
	getenv func(string) string
	client *http.Client
}

// Token implements TokenSource.
func (d *defaultTokenSource) Token(ctx context.Context) (string, error) {
	if d.file != "" {
		return readTokenFile(d.file)
	}
	if u, t := d.getenv(EnvActionsTokenURL), d.getenv(EnvActionsTokenToken); u != "" && t != "" {
		return d.actionsToken(ctx, u, t)
	}
	if t := strings.TrimSpace(d.getenv(EnvSigstoreIDToken)); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("keyless signing needs an identity token: none configured (sign.keyless.identity_token), not in GitHub Actions (%s, %s: give the job `permissions: id-token: write`), and %s is not set",
		EnvActionsTokenURL, EnvActionsTokenToken, EnvSigstoreIDToken)
}

func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading identity token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading identity token %s: %w", path, err)
	}
	if len(b) > maxTokenBytes {
		return "", fmt.Errorf("identity token file %s is larger than %d bytes", path, maxTokenBytes)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("identity token file %s is empty", path)
	}
	return t, nil
}

// actionsToken asks GitHub Actions' OIDC endpoint for a token with
// audience sigstore. Neither the request token nor the answer is ever in an
// error.
func (d *defaultTokenSource) actionsToken(ctx context.Context, rawURL, bearer string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%s is not a URL", EnvActionsTokenURL)
	}
	q := u.Query()
	q.Set("audience", TokenAudience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("GitHub Actions token request: %w", err)
	}
	req.Header.Set("Authorization", "bearer "+bearer)
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GitHub Actions token request to %s: %w", u.Host, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBytes))
	if err != nil {
		return "", fmt.Errorf("reading GitHub Actions token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GitHub Actions token endpoint %s answered %s", u.Host, resp.Status)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", fmt.Errorf("GitHub Actions token endpoint %s: answer has no token", u.Host)
	}
	return v.Value, nil
}
