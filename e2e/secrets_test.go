package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

// sentinel is a secret value that must appear nowhere slipway writes.
func sentinel(kind string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return "SENTINEL" + kind + hex.EncodeToString(b)
}

// secretForms are the ways a secret could leak: as is, and base64 of it
// and of user:secret (Basic auth, config.json "auth"), standard and URL
// alphabets, padded or not.
func secretForms(user string, secrets ...string) map[string]string {
	forms := map[string]string{}
	for _, s := range secrets {
		forms[s] = s
		for _, v := range []string{s, user + ":" + s} {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
				forms[enc.EncodeToString([]byte(v))] = "base64(" + strings.Replace(v, s, s[:12]+"…", 1) + ")"
			}
		}
	}
	return forms
}

// leakScanner counts occurrences of the secret forms in bytes, looking
// inside gzip streams and inside base64 DSSE payloads and JSON string
// values (attestations carry the in-toto statement base64-encoded).
type leakScanner struct {
	forms map[string]string
	found []string
	bytes int64
	files int
	// probe is a harmless string known to be in the provenance statement;
	// probeDecoded counts it in decoded (base64/gzip) content, to show the
	// attestations were looked into.
	probe        string
	probeDecoded int
}

func (s *leakScanner) scan(where string, b []byte, depth int) {
	s.bytes += int64(len(b))
	if depth > 0 && s.probe != "" {
		s.probeDecoded += bytes.Count(b, []byte(s.probe))
	}
	for f, what := range s.forms {
		if n := bytes.Count(b, []byte(f)); n > 0 {
			s.found = append(s.found, fmt.Sprintf("%s: %d× %s", where, n, what))
		}
	}
	if depth > 3 {
		return
	}
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if u, err := io.ReadAll(io.LimitReader(zr, 512<<20)); err == nil || len(u) > 0 {
				s.scan(where+" (gunzipped)", u, depth+1)
			}
		}
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		var v any
		if json.Unmarshal(t, &v) == nil {
			s.walkJSON(where, v, depth)
		}
	}
}

func (s *leakScanner) walkJSON(where string, v any, depth int) {
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			s.walkJSON(where, e, depth)
		}
	case []any:
		for _, e := range v {
			s.walkJSON(where, e, depth)
		}
	case string:
		if len(v) >= 16 {
			if d, err := base64.StdEncoding.DecodeString(v); err == nil {
				s.scan(where+" (base64 value)", d, depth+1)
			}
		}
	}
}

// scanTree scans every regular file under root but those named in skip
// (inputs the test wrote).
func (s *leakScanner) scanTree(root string, skip ...string) {
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if !fi.Mode().IsRegular() || slices.Contains(skip, fi.Name()) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		s.files++
		s.scan(p, b, 0)
		return nil
	})
}

// TestSecretsNeverWritten runs the whole pipeline with sentinel secrets:
// the registry password (htpasswd auth; config.json "auth"), a bearer
// registry token in config.json, COSIGN_PASSWORD and a build environment
// value. With --verbose --log-format json, none of them (nor their base64
// forms) may appear in stdout, stderr, the reports, the results JSON, the
// OCI layout (SBOM, vuln and provenance attestations, decoded), the
// registry's storage (what was pushed) or any cache file. Then the same
// with a wrong registry password and a wrong COSIGN_PASSWORD: the errors
// must not echo them.
func TestSecretsNeverWritten(t *testing.T) {
	const user = "slipway-ci"
	regPass, cosignPass, token, buildSecret := sentinel("REGPW"), sentinel("COSIGNPW"), sentinel("TOKEN"), sentinel("BUILDENV")
	reg := testutil.StartRegistry(t, testutil.WithBasicAuth(user, regPass))
	db := fixtureDB(t)
	dir := t.TempDir()
	key, pub := demoKey(t, dir, cosignPass)
	cache, xdg := filepath.Join(dir, "slipway-cache"), filepath.Join(dir, "xdg-cache")

	dockerConfig := func(pass string) string {
		d := t.TempDir()
		cfg := map[string]any{"auths": map[string]any{
			reg.Host:         map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))},
			"127.0.0.1:1":    map[string]string{"registrytoken": token},
			"registry.local": map[string]string{"username": user, "password": pass, "identitytoken": token},
		}}
		b, _ := json.Marshal(cfg)
		writeFile(t, d, "config.json", string(b))
		return d
	}
	config := func(repository string) string {
		repo := ""
		if repository != "" {
			repo = "repository: " + repository + "\n"
		}
		return fmt.Sprintf(`%splatforms: [linux/amd64, linux/arm64]
cache_dir: %s
oci_layout: dist/oci
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
    env: ["SLIPWAY_TEST_SECRET=%s"]
scan:
  db: {dir: %s}
  cache_dir: %s
  reports:
    - {format: sarif, output: "reports/{{.Target}}.sarif"}
    - {format: json, output: "reports/{{.Target}}.json"}
sign:
  key: %s
  attestations: [sbom, vuln, provenance]
policy:
  keys: [%s]
  require_attestations: [sbom, vuln, provenance]
`, repo, cache, filepath.Join(repoRoot(), "testdata", "apps", "hello"), buildSecret, db, filepath.Join(dir, "scan-cache"), key, pub)
	}
	forms := secretForms(user, regPass, cosignPass, token, buildSecret)
	env := func(docker, cosign string) []string {
		return []string{"DOCKER_CONFIG=" + docker, "COSIGN_PASSWORD=" + cosign, "XDG_CACHE_HOME=" + xdg}
	}
	goodDocker := dockerConfig(regPass)
	args := []string{"run", "--verbose", "--log-format", "json", "--output-json", "results.json"}

	ls := &leakScanner{forms: forms, probe: "SLIPWAY_TEST_SECRET"}
	// To an OCI layout (no repository), then to the registry.
	layoutDir := filepath.Join(dir, "layout")
	writeFile(t, layoutDir, "slipway.yaml", config(""))
	r := slipway(t, layoutDir, env(goodDocker, cosignPass), args...)
	if r.code != 0 {
		t.Fatalf("run to a layout: %s", r)
	}
	ls.scan("layout run stdout", []byte(r.stdout), 0)
	ls.scan("layout run stderr", []byte(r.stderr), 0)
	if _, err := os.Stat(filepath.Join(layoutDir, "dist", "oci", "index.json")); err != nil {
		t.Fatalf("no OCI layout written: %v", err)
	}

	pushDir := filepath.Join(dir, "push")
	writeFile(t, pushDir, "slipway.yaml", config(reg.Host+"/team"))
	r = slipway(t, pushDir, env(goodDocker, cosignPass), append(args, "--push")...)
	if r.code != 0 {
		t.Fatalf("run --push: %s", r)
	}
	ls.scan("push run stdout", []byte(r.stdout), 0)
	ls.scan("push run stderr", []byte(r.stderr), 0)
	if !strings.Contains(r.stderr, `"level":"DEBUG"`) {
		t.Fatalf("no debug logging: the check would prove little\n%s", r.stderr)
	}
	res := readResults(t, filepath.Join(pushDir, "results.json"))
	if !res["hello"].Pushed {
		t.Fatalf("not pushed: %+v", res)
	}
	if v := slipway(t, pushDir, env(goodDocker, cosignPass), "verify", res["hello"].Ref); v.code != 0 {
		t.Fatalf("verify: %s", v)
	}

	// Wrong registry password: a clean error that does not echo it.
	wrongPass := sentinel("WRONGREGPW")
	wrongCosign := sentinel("WRONGCOSIGN")
	wrongForms := secretForms(user, wrongPass, wrongCosign)
	for f, w := range wrongForms {
		forms[f] = w
	}
	r = slipway(t, pushDir, env(dockerConfig(wrongPass), cosignPass), append(args, "--push")...)
	if r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "unauthorized") {
		t.Fatalf("wrong registry password: want exit 1 naming the auth failure\n%s", r)
	}
	ls.scan("wrong registry password stdout", []byte(r.stdout), 0)
	ls.scan("wrong registry password stderr", []byte(r.stderr), 0)
	r = slipway(t, pushDir, env(goodDocker, wrongCosign), append(args, "--push")...)
	if r.code == 0 {
		t.Fatalf("wrong COSIGN_PASSWORD: exit 0\n%s", r)
	}
	ls.scan("wrong cosign password stdout", []byte(r.stdout), 0)
	ls.scan("wrong cosign password stderr", []byte(r.stderr), 0)

	// Every file written: work dirs (reports, results, layout with its
	// attestations), caches, and what the registry stored.
	ls.scanTree(layoutDir, "slipway.yaml")
	ls.scanTree(pushDir, "slipway.yaml")
	ls.scanTree(cache)
	ls.scanTree(xdg)
	ls.scanTree(filepath.Join(dir, "scan-cache"))
	ls.scanTree(reg.Root)
	sort.Strings(ls.found)
	t.Logf("secret forms checked: %d; files scanned: %d (%d MiB, decoded content included); occurrences: %d",
		len(forms), ls.files, ls.bytes>>20, len(ls.found))
	if len(ls.found) > 0 {
		t.Fatalf("secrets leaked:\n%s", strings.Join(ls.found, "\n"))
	}
	if ls.probeDecoded == 0 {
		t.Errorf("the provenance's build env names were not found in decoded attestations: they were not checked")
	}
	for _, must := range []string{filepath.Join(layoutDir, "reports", "hello.sarif"), filepath.Join(pushDir, "reports", "hello.json"), filepath.Join(layoutDir, "results.json")} {
		if _, err := os.Stat(must); err != nil {
			t.Errorf("expected output missing, so it was not checked: %v", err)
		}
	}
}
