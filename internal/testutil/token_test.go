package testutil_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/faultproxy"
)

// TestTokenAuthRegistry checks the token-auth fixture itself: docker-registry
// accepts the test server's JWTs for the scopes granted, refuses anonymous
// pushes, and refuses a token once its lifetime has passed.
func TestTokenAuthRegistry(t *testing.T) {
	ts := testutil.NewTokenServer(t, "robot", "s3cret", time.Minute)
	p := faultproxy.Start(t, "", faultproxy.WithToken(ts))
	reg := testutil.StartRegistry(t, testutil.WithTokenAuth(ts, p.URL+faultproxy.TokenPath))
	if err := p.SetTarget(reg.URL()); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(p.Host + "/team/img:1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err == nil {
		t.Fatal("anonymous push accepted")
	}
	auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})
	if err := remote.Write(ref, img, auth); err != nil {
		t.Fatalf("push with credentials: %v\n%s", err, reg.Log())
	}
	if _, err := remote.Head(ref, auth); err != nil {
		t.Fatal(err)
	}

	// A token past its lifetime is refused by the registry itself.
	ts.SetLifetime(time.Second)
	resp, err := http.Get(p.URL + faultproxy.TokenPath + "?service=" + ts.Service + "&scope=repository:team/img:pull")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous token request: %s", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodGet, p.URL+faultproxy.TokenPath+"?service="+ts.Service+"&scope=repository:team/img:pull", nil)
	req.SetBasicAuth("robot", "s3cret")
	tok := fetchToken(t, req)
	head := func() int {
		req, _ := http.NewRequest(http.MethodHead, p.URL+"/v2/team/img/manifests/1", nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := head(); c != http.StatusOK {
		t.Fatalf("fresh token: HEAD %d", c)
	}
	time.Sleep(2500 * time.Millisecond)
	if c := head(); c != http.StatusUnauthorized {
		t.Fatalf("expired token: HEAD %d, want 401", c)
	}
	if issued, refused := ts.Issued(); issued < 2 || refused < 2 {
		t.Fatalf("issued %d, refused %d", issued, refused)
	}
}

func fetchToken(t *testing.T, req *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := jsonDecode(resp, &body); err != nil || body.Token == "" {
		t.Fatalf("token response %s: %v", resp.Status, err)
	}
	return body.Token
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
