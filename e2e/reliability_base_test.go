package e2e

// Hostile or broken bases from a registry: other bytes for a layer,
// wrong media types (split from reliability_registry_test.go).

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/internal/testutil/faultproxy"
)

// TestCorruptBase: a base layer served with other bytes (a valid layer of
// the same size), truncated (a clean, short response), or the base tag
// served with a forged Docker-Content-Digest. The run fails naming the
// mismatch; the destination holds no tag and no corrupt or forged blob,
// and nothing at all when the mismatch shows before the push.
func TestCorruptBase(t *testing.T) {
	db := fixtureDB(t)
	app := copyApp(t, "hello")
	cases := []struct {
		name       string
		rule       func(base v1.Image) *faultproxy.Rule
		readOnPush bool
	}{
		{"other bytes, same size", func(base v1.Image) *faultproxy.Rule {
			ls, _ := base.Layers()
			d, _ := ls[0].Digest()
			size, _ := ls[0].Size()
			return &faultproxy.Rule{Class: faultproxy.BlobGet, Match: suffix(d.String()),
				Action: faultproxy.Body("wrong-bytes", forgedLayer(t, int(size)), nil)}
		}, false},
		// Forged bytes on the first read only: the scan reads them and the
		// push would copy the real ones. The scanner checks each layer's
		// digest before analysing it, so the gate never judges bytes that
		// are not the image's.
		{"other bytes on the first read only", func(base v1.Image) *faultproxy.Rule {
			ls, _ := base.Layers()
			d, _ := ls[0].Digest()
			size, _ := ls[0].Size()
			return &faultproxy.Rule{Class: faultproxy.BlobGet, Match: suffix(d.String()), Times: 1,
				Action: faultproxy.Body("wrong-bytes-once", forgedLayer(t, int(size)), nil)}
		}, false},
		{"truncated", func(base v1.Image) *faultproxy.Rule {
			return &faultproxy.Rule{Class: faultproxy.BlobGet, Match: suffix(layerDigests(t, base)[1]), Action: faultproxy.Truncate(1000)}
		}, false},
		{"forged tag digest", func(v1.Image) *faultproxy.Rule {
			return &faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.RewriteHeader("Docker-Content-Digest", func(string) string {
				return "sha256:" + strings.Repeat("ab", 32)
			})}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tr := startTwoRegistries(t)
			tr.psrc.Add(c.rule(tr.base))
			cfg := faultConfig(app, tr.pdst.Host+"/team", tr.baseRef) +
				fmt.Sprintf("scan:\n  db: {dir: %s}\n  cache_dir: %s\n", db, t.TempDir())
			run := pushWith(t, cfg, nil, "--scan")
			tally(t, tr.psrc)
			if run.code != 1 {
				t.Fatalf("exit %d, want 1:\n%s\n%s", run.code, run, tr.psrc)
			}
			if len(tr.psrc.Faults()) == 0 {
				t.Fatalf("fault not injected:\n%s", tr.psrc)
			}
			last := lastLine(run.stderr)
			if !mentionsDigestMismatch(last) {
				t.Fatalf("error does not say the digest did not match: %q", last)
			}
			stored := storedBlobs(t, tr.dst) // fails on any corrupt blob
			if c.readOnPush {
				// Trivy stops reading a layer at the tar end marker, before
				// go-containerregistry's digest check at EOF: the mismatch
				// surfaces when the push streams the layer. Blobs pushed
				// before it are intact; nothing is tagged, the forged
				// layer is not stored.
				checkNothingTagged(t, tr.dst.Host, "team/hello")
				for _, d := range layerDigests(t, tr.base) {
					if stored[d] {
						t.Fatalf("forged layer %s stored", d)
					}
				}
			} else {
				registryHasNothing(t, tr.dst)
			}
			t.Logf("%s: %s", c.name, last)
		})
	}
}

// forgedLayer is a valid gzipped tar layer (one file of random bytes) of
// exactly size bytes, padded with a gzip header extra field: a substitute
// for a real layer that passes every check but the digest.
func forgedLayer(t *testing.T, size int) []byte {
	t.Helper()
	gz := func(n int, extra []byte) []byte {
		content := make([]byte, n)
		for i := range content {
			content[i] = byte(i*7919 + i/251) // incompressible enough, deterministic
		}
		var tarBuf bytes.Buffer
		tw := tar.NewWriter(&tarBuf)
		tw.WriteHeader(&tar.Header{Name: "etc/forged", Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
		tw.Write(content)
		tw.Close()
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.NoCompression)
		zw.Extra = extra
		zw.Write(tarBuf.Bytes())
		zw.Close()
		return b.Bytes()
	}
	for n := size - 8192; n > 0; n -= 1024 {
		bare := len(gz(n, nil))
		if pad := size - bare - 2; pad >= 1 && pad < 60000 {
			out := gz(n, bytes.Repeat([]byte{'x'}, pad))
			if len(out) != size {
				t.Fatalf("forged layer is %d bytes, want %d", len(out), size)
			}
			return out
		}
	}
	t.Fatalf("cannot forge a layer of %d bytes", size)
	return nil
}

func mentionsDigestMismatch(s string) bool {
	s = strings.ToLower(s)
	for _, w := range []string{"digest mismatch", "does not match", "unexpected digest", "size mismatch", "error verifying"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func suffix(d string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, d) }
}

// rawManifest is a manifest pushed byte for byte.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// rssLimit is the most memory slipway may use on hostile registry input.
const rssLimit = 256 << 20

// TestBaseMediaTypes: a base whose manifest has the wrong media type
// (text/plain, Docker schema 1), an image with a layer type no runtime
// knows, or an index served where the index said an image is. Each fails
// with an error naming the type, and nothing is pushed.
func TestBaseMediaTypes(t *testing.T) {
	app := copyApp(t, "hello")
	schema1 := []byte(`{"schemaVersion":1,"name":"base/img","tag":"1","architecture":"amd64","fsLayers":[{"blobSum":"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],"history":[{"v1Compatibility":"{\"id\":\"x\"}"}],"signatures":[]}`)
	cases := []struct {
		name  string
		setup func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string // returns the base ref
		want  string
	}{
		{"text/plain manifest", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			pushBase(t, reg.Host, "base/img")
			p.Add(&faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.RewriteHeader("Content-Type", func(string) string { return "text/plain" })})
			return p.Host + "/base/img:1"
		}, `"text/plain"`},
		{"schema1", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			pushBase(t, reg.Host, "base/img")
			p.Add(&faultproxy.Rule{Class: faultproxy.ManifestGet, Action: faultproxy.Body("schema1", schema1,
				map[string]string{"Content-Type": string(types.DockerManifestSchema1Signed)})})
			return p.Host + "/base/img:1"
		}, string(types.DockerManifestSchema1Signed)},
		{"unknown layer type", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			img := pushBase(t, reg.Host, "base/plain")
			l, err := random.Layer(1024, "application/vnd.example.unknown.layer.v1")
			if err != nil {
				t.Fatal(err)
			}
			img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: "application/vnd.example.unknown.layer.v1"})
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := name.ParseReference(reg.Host + "/base/img:1")
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			return p.Host + "/base/img:1"
		}, "application/vnd.example.unknown.layer.v1"},
		{"index where an image is expected", func(t *testing.T, reg *testutil.Registry, p *faultproxy.Proxy) string {
			// The base index says its linux/amd64 entry is an image
			// manifest; the bytes behind that digest are an index.
			img := pushBase(t, reg.Host, "base/img")
			inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
			innerRef, _ := name.ParseReference(reg.Host + "/base/img:inner")
			if err := remote.WriteIndex(innerRef, inner); err != nil {
				t.Fatal(err)
			}
			raw, _ := inner.RawManifest()
			d, _ := inner.Digest()
			outer := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}}]}`,
				types.OCIImageIndex, types.OCIManifestSchema1, d, len(raw))
			ref, _ := name.ParseReference(reg.Host + "/base/img:1")
			if err := remote.Put(ref, rawManifest{[]byte(outer), types.OCIImageIndex}); err != nil {
				t.Fatal(err)
			}
			return p.Host + "/base/img:1"
		}, "OCI index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reg, p := proxied(t)
			base := c.setup(t, reg, p)
			run := pushWith(t, faultConfig(app, p.Host+"/team", base), nil)
			tally(t, p)
			if run.code != 1 {
				t.Fatalf("exit %d, want 1\n%s\n%s", run.code, run, p)
			}
			last := lastLine(run.stderr)
			if !strings.Contains(last, c.want) {
				t.Fatalf("error does not name %s: %q", c.want, last)
			}
			checkNothingTagged(t, reg.Host, "team/hello")
			r, _ := name.NewRepository(reg.Host + "/team/hello")
			if tags, err := remote.List(r); err == nil && len(tags) > 0 {
				t.Fatalf("tags: %v", tags)
			}
			t.Logf("%s: %s", c.name, last)
		})
	}
}
