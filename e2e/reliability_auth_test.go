package e2e

// Registry faults against credentials and limits: oversized responses,
// decoys, token expiry, parallel pushes, credential helpers, htpasswd and
// TLS (split from reliability_registry_test.go).

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/faultproxy"
)

// TestOversizedResponses: a 50 MiB manifest for the base, an endless error
// body, an endless manifest and an endless token body. Each fails in
// bounded time with slipway's peak RSS under 256 MiB.
func TestOversizedResponses(t *testing.T) {
	app := copyApp(t, "hello")
	huge := bytes.Repeat([]byte(" "), 50<<20)
	cases := []struct {
		name  string
		token bool
		rule  *faultproxy.Rule
		want  string
	}{
		{"50 MiB base manifest", false, &faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.Body("huge-manifest", huge, nil)}, "limit"},
		{"endless base manifest", false, &faultproxy.Rule{Class: faultproxy.ManifestGet,
			Action: faultproxy.Endless(200, string(types.OCIManifestSchema1), 1<<30, 50*time.Second)}, "limit"},
		{"endless error body", false, &faultproxy.Rule{Class: faultproxy.ManifestGet,
			Action: faultproxy.Endless(500, "application/json", 1<<30, 50*time.Second)}, "exceeds"},
		{"endless token body", true, &faultproxy.Rule{Class: faultproxy.Token,
			Action: faultproxy.Endless(200, "application/json", 1<<30, 50*time.Second)}, "exceeds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var reg *testutil.Registry
			var p *faultproxy.Proxy
			env := []string{}
			if c.token {
				ts := testutil.NewTokenServer(t, "robot", "pw", time.Minute)
				p = faultproxy.Start(t, "", faultproxy.WithToken(ts))
				reg = testutil.StartRegistry(t, testutil.WithTokenAuth(ts, p.URL+faultproxy.TokenPath))
				if err := p.SetTarget(reg.URL()); err != nil {
					t.Fatal(err)
				}
				env = append(env, "DOCKER_CONFIG="+dockerConfig(t, map[string]string{p.Host: "robot:pw"}, nil))
				pushBase(t, p.Host, "base/img", remote.WithAuth(&authn.Basic{Username: "robot", Password: "pw"}))
			} else {
				reg, p = proxied(t)
				pushBase(t, reg.Host, "base/img")
			}
			p.Add(c.rule)
			dir := t.TempDir()
			writeFile(t, dir, "slipway.yaml", faultConfig(app, p.Host+"/team", p.Host+"/base/img:1"))
			start := time.Now()
			r, rss := slipwayRSS(t, dir, env, "build", "--push")
			elapsed := time.Since(start)
			tally(t, p)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", r.code, r)
			}
			if len(p.Faults()) == 0 {
				t.Fatalf("fault not injected:\n%s", p)
			}
			if elapsed > 60*time.Second {
				t.Fatalf("took %s", elapsed)
			}
			if rss == 0 || rss > rssLimit {
				t.Fatalf("peak RSS %d MiB, limit %d MiB", rss>>20, rssLimit>>20)
			}
			last := lastLine(r.stderr)
			if !strings.Contains(last, c.want) {
				t.Fatalf("error does not mention %q: %q", c.want, last)
			}
			var out int64
			for _, q := range p.Requests() {
				out += q.Out
			}
			if c.token {
				// Token realms must be on the host clients use: read
				// through the proxy, without the fault.
				p.Clear()
				checkNothingTagged(t, p.Host, "team/hello", authFor(c.token)...)
			} else {
				checkNothingTagged(t, reg.Host, "team/hello")
			}
			t.Logf("%s: exit %d in %s, peak RSS %d MiB, %d MiB served: %s", c.name, r.code, elapsed.Round(time.Millisecond), rss>>20, out>>20, last)
		})
	}
}

func authFor(token bool) []remote.Option {
	if !token {
		return nil
	}
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: "robot", Password: "pw"})}
}

// dockerConfig writes a Docker config.json with auths (host → "user:pw")
// and credHelpers (host → helper suffix) and returns its directory.
func dockerConfig(t *testing.T, auths, helpers map[string]string) string {
	t.Helper()
	cfg := map[string]any{}
	a := map[string]any{}
	for h, up := range auths {
		a[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(up))}
	}
	cfg["auths"] = a
	if helpers != nil {
		cfg["credHelpers"] = helpers
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "config.json", string(b))
	return dir
}

// credentialed counts the requests in p's log that carried an
// Authorization header.
func credentialed(p *faultproxy.Proxy) int {
	n := 0
	for _, q := range p.Requests() {
		if q.Auth != "" {
			n++
		}
	}
	return n
}

// TestDecoyGetsNoCredentials: a blob GET redirected to, an upload Location
// pointing at, or a token realm on another loopback address (a decoy on
// 127.0.0.2). The decoy must never receive a request carrying credentials;
// a push that cannot complete fails, never exits 0 with a broken image.
func TestDecoyGetsNoCredentials(t *testing.T) {
	app := copyApp(t, "hello")
	t.Run("redirects", func(t *testing.T) {
		for _, c := range []string{"blob GET", "upload Location"} {
			t.Run(c, func(t *testing.T) {
				t.Parallel()
				reg, p := proxied(t, testutil.WithBasicAuth("robot", "s3cret"))
				decoy := faultproxy.Start(t, reg.URL(), faultproxy.WithAddr("127.0.0.2:0"))
				auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})
				pushBase(t, reg.Host, "base/img", auth)
				if c == "blob GET" {
					p.Add(&faultproxy.Rule{Class: faultproxy.BlobGet, Action: faultproxy.Serve("redirect-to-decoy", func(w http.ResponseWriter, r *http.Request) {
						http.Redirect(w, r, decoy.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
					})})
				} else {
					p.Add(&faultproxy.Rule{Class: faultproxy.UploadPost, Action: faultproxy.RewriteHeader("Location", func(old string) string {
						if strings.HasPrefix(old, "/") {
							return decoy.URL + old
						}
						return old
					})})
				}
				env := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{p.Host: "robot:s3cret"}, nil)}
				run := pushWith(t, faultConfig(app, p.Host+"/team", p.Host+"/base/img:1"), env)
				tally(t, p)
				if len(p.Faults()) == 0 {
					t.Fatalf("no redirect injected (the case tests nothing):\n%s", p)
				}
				if n := credentialed(decoy); n != 0 {
					t.Fatalf("decoy received %d requests with credentials:\n%s", n, decoy)
				}
				if run.code == 0 {
					checkPushed(t, reg.Host, "team/hello", run.res.Digest, auth)
				} else {
					checkNothingTagged(t, reg.Host, "team/hello", auth)
				}
				t.Logf("%s: exit %d, decoy saw %d requests, 0 with credentials: %s", c, run.code, len(decoy.Requests()), lastLine(run.stderr))
			})
		}
	})
	t.Run("token realm", func(t *testing.T) {
		ts := testutil.NewTokenServer(t, "robot", "s3cret", time.Minute)
		decoy := faultproxy.Start(t, "", faultproxy.WithAddr("127.0.0.2:0"), faultproxy.WithToken(ts))
		_, p := proxied(t, testutil.WithTokenAuth(ts, decoy.URL+faultproxy.TokenPath))
		env := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{p.Host: "robot:s3cret"}, nil)}
		run := pushWith(t, faultConfig(app, p.Host+"/team", "scratch"), env)
		if run.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", run.code, run)
		}
		if n := credentialed(decoy); n != 0 {
			t.Fatalf("decoy token realm received %d requests with credentials:\n%s", n, decoy)
		}
		if issued, _ := ts.Issued(); issued != 0 {
			t.Fatalf("decoy issued %d tokens", issued)
		}
		if !strings.Contains(lastLine(run.stderr), "realm") {
			t.Fatalf("error does not name the realm: %q", lastLine(run.stderr))
		}
		t.Logf("token realm on 127.0.0.2: decoy saw %d requests: %s", len(decoy.Requests()), lastLine(run.stderr))
	})
}

// TestTokenExpiryMidUpload: tokens live 2 s and the app layer's upload is
// held for 3 s, so the token expires mid-upload. The push completes after
// re-authenticating, or fails cleanly (nothing tagged) and a re-run with a
// sane token lifetime completes.
func TestTokenExpiryMidUpload(t *testing.T) {
	app := copyApp(t, "hello")
	ts := testutil.NewTokenServer(t, "robot", "s3cret", 2*time.Second)
	p := faultproxy.Start(t, "", faultproxy.WithToken(ts))
	reg := testutil.StartRegistry(t, testutil.WithTokenAuth(ts, p.URL+faultproxy.TokenPath))
	if err := p.SetTarget(reg.URL()); err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})
	p.Add(&faultproxy.Rule{Class: faultproxy.UploadPatch, Times: 1,
		Match: func(r *http.Request) bool { return r.ContentLength > 1<<20 }, Action: faultproxy.Delay(3 * time.Second)})
	env := []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{p.Host: "robot:s3cret"}, nil)}
	cfg := faultConfig(app, p.Host+"/team", "scratch")
	run := pushWith(t, cfg, env)
	tally(t, p)
	var expired int
	for _, q := range p.Requests() {
		if q.Status == http.StatusUnauthorized && q.Auth != "" {
			expired++
		}
	}
	if expired == 0 {
		t.Fatalf("no request was refused with an expired token (the case tests nothing):\n%s", p)
	}
	issued, _ := ts.Issued()
	p.Clear()
	if run.code != 0 {
		checkNothingTagged(t, p.Host, "team/hello", auth)
		ts.SetLifetime(time.Minute)
		rerun := pushWith(t, cfg, env)
		if rerun.code != 0 {
			t.Fatalf("re-run after a clean failure: %s", rerun)
		}
		run = rerun
		t.Logf("expired mid-upload: failed cleanly (%s); re-run completed", lastLine(run.stderr))
	} else {
		t.Logf("expired mid-upload: %d requests refused, %d tokens issued, push completed after re-auth", expired, issued)
	}
	checkPushed(t, p.Host, "team/hello", run.res.Digest, auth)
}

// TestParallelPushesBounded: ten `slipway build --push --jobs 2` processes
// push the same image at once, each through its own proxy, sharing one
// user cache directory. Each keeps at most 2 requests in flight; all exit
// 0 with the same digest; a final run on the shared cache still succeeds.
func TestParallelPushesBounded(t *testing.T) {
	const procs, jobs = 10, 2
	reg := testutil.StartRegistry(t)
	app := copyApp(t, "hello")
	cache := t.TempDir()
	env := []string{"XDG_CACHE_HOME=" + cache}
	proxies := make([]*faultproxy.Proxy, procs)
	runs := make([]pushRun, procs)
	var wg sync.WaitGroup
	for i := range procs {
		proxies[i] = faultproxy.Start(t, reg.URL())
		cfg := faultConfig(app, proxies[i].Host+"/team", "scratch")
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = pushWith(t, cfg, env, "--jobs", fmt.Sprint(jobs))
		}()
	}
	wg.Wait()
	digests := map[string]int{}
	maxIn := 0
	for i, r := range runs {
		if r.code != 0 {
			t.Fatalf("process %d: %s", i, r)
		}
		digests[r.res.Digest]++
		m := proxies[i].MaxInFlight()
		maxIn = max(maxIn, m)
		if m > jobs {
			t.Errorf("process %d had %d requests in flight, --jobs %d", i, m, jobs)
		}
	}
	if len(digests) != 1 {
		t.Fatalf("digests differ: %v", digests)
	}
	var digest string
	for d := range digests {
		digest = d
	}
	checkPushed(t, reg.Host, "team/hello", digest)
	final := pushWith(t, faultConfig(app, reg.Host+"/team", "scratch"), env)
	if final.code != 0 || final.res.Digest != digest {
		t.Fatalf("final run on the shared cache: %s", final)
	}
	checkPushed(t, reg.Host, "team/hello", digest)
	storedBlobs(t, reg)
	t.Logf("%d processes, --jobs %d: max in flight per process %d, one digest %s", procs, jobs, maxIn, digest)
}

// TestCredentialHelpers: a credential helper that is missing, fails, or
// prints garbage; credentials for host A while pushing to host B. Each is
// a clear error, and B never receives A's credentials.
func TestCredentialHelpers(t *testing.T) {
	app := copyApp(t, "hello")
	reg, p := proxied(t, testutil.WithBasicAuth("robot", "s3cret"))
	bin := t.TempDir()
	writeFile(t, bin, "docker-credential-broken", "#!/bin/sh\necho 'helper exploded' >&2\nexit 1\n")
	writeFile(t, bin, "docker-credential-garbage", "#!/bin/sh\necho 'this is not json {'\n")
	for _, f := range []string{"docker-credential-broken", "docker-credential-garbage"} {
		os.Chmod(filepath.Join(bin, f), 0o755)
	}
	path := "PATH=" + bin + ":" + os.Getenv("PATH")
	aSecret := base64.StdEncoding.EncodeToString([]byte("alice:host-a-secret"))
	cases := []struct {
		name         string
		auths, helps map[string]string
		want         string
	}{
		{"missing helper", nil, map[string]string{p.Host: "nosuch"}, "docker-credential-nosuch"},
		{"failing helper", nil, map[string]string{p.Host: "broken"}, "error getting credentials"},
		{"garbage helper", nil, map[string]string{p.Host: "garbage"}, "invalid"},
		{"credentials for another host", map[string]string{"127.0.0.2:5000": "alice:host-a-secret"}, nil, "UNAUTHORIZED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.Reset()
			env := []string{path, "DOCKER_CONFIG=" + dockerConfig(t, c.auths, c.helps)}
			run := pushWith(t, faultConfig(app, p.Host+"/team", "scratch"), env)
			if run.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", run.code, run)
			}
			last := lastLine(run.stderr)
			if !strings.Contains(last, c.want) {
				t.Fatalf("error does not mention %q: %q", c.want, last)
			}
			for _, q := range p.Requests() {
				if strings.Contains(q.Auth, aSecret) {
					t.Fatalf("host A's credentials sent to B: %s %s", q.Method, q.Path)
				}
			}
			t.Logf("%s: %s", c.name, last)
		})
	}
	checkNothingTagged(t, reg.Host, "team/hello", remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"}))
}

// TestAuthAndTLSPush: a plain push to docker-registry with htpasswd auth,
// and to one serving TLS from a test CA (trusted through SLIPWAY_CA_FILE;
// refused without it).
func TestAuthAndTLSPush(t *testing.T) {
	app := copyApp(t, "hello")
	t.Run("htpasswd", func(t *testing.T) {
		reg := testutil.StartRegistry(t, testutil.WithBasicAuth("robot", "s3cret"))
		auth := remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})
		cfg := faultConfig(app, reg.Host+"/team", "scratch")
		if r := pushWith(t, cfg, nil); r.code != 1 || !strings.Contains(lastLine(r.stderr), "UNAUTHORIZED") {
			t.Fatalf("without credentials: %s", r)
		}
		run := pushWith(t, cfg, []string{"DOCKER_CONFIG=" + dockerConfig(t, map[string]string{reg.Host: "robot:s3cret"}, nil)})
		if run.code != 0 {
			t.Fatalf("push: %s", run)
		}
		checkPushed(t, reg.Host, "team/hello", run.res.Digest, auth)
	})
	t.Run("tls", func(t *testing.T) {
		reg := testutil.StartRegistry(t, testutil.WithTLS())
		ca := writeFile(t, t.TempDir(), "ca.pem", string(reg.CA))
		cfg := faultConfig(app, reg.Host+"/team", "scratch")
		if r := pushWith(t, cfg, nil); r.code != 1 {
			t.Fatalf("without the CA: %s", r)
		}
		run := pushWith(t, cfg, []string{"SLIPWAY_CA_FILE=" + ca})
		if run.code != 0 {
			t.Fatalf("push: %s", run)
		}
		tr := &http.Transport{TLSClientConfig: reg.Client().Transport.(*http.Transport).TLSClientConfig}
		checkPushed(t, reg.Host, "team/hello", run.res.Digest, remote.WithTransport(tr))
	})
}
