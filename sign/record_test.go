package sign

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

// TestRecordConfirmsWithHeads: with a record, an unchanged rerun (new
// signatures over the same statements) only HEADs the signature tags;
// when another signer has moved a tag since, the full path runs again and
// keeps both signers; a damaged record costs requests, never correctness.
func TestRecordConfirmsWithHeads(t *testing.T) {
	for _, tc := range []struct{ name, host string }{
		{"referrers tag (docker-registry)", realRegistry(t)},
		{"referrers tag (ggcr)", memRegistry(t)},
		{"referrers API (ggcr)", apiRegistry(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testutil.StartProxy(t, "http://"+tc.host)
			repo := mustRepo(t, proxy.Host+"/app")
			idx := testIndex(t)
			d := pushIndex(t, repo, "v1", idx)
			key := testKey(t, "cosign")
			rec, err := OpenRecord(filepath.Join(t.TempDir(), "record"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewKeyed(key)
			if err != nil {
				t.Fatal(err)
			}
			write := func() {
				t.Helper()
				sigs, err := s.Sign(context.Background(), idx, repo, WithSBOM(testSBOM))
				if err != nil {
					t.Fatal(err)
				}
				if err := WriteRemote(context.Background(), repo, sigs, rec, http.DefaultTransport); err != nil {
					t.Fatalf("WriteRemote: %v", err)
				}
			}
			write()
			proxy.Reset()
			write()
			for _, r := range proxy.Requests() {
				if r.Path == "/v2/" || r.Method == http.MethodHead || (r.Method == http.MethodGet && strings.Contains(r.Path, "/referrers/")) {
					continue
				}
				t.Errorf("unchanged rerun made %s %s; want only HEADs (and the referrers listing)", r.Method, r.Path)
			}
			policy := Policy{Keys: []*PublicKey{key.Public(), testPub(t, "other")}, Threshold: 2}
			if _, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}}); err != nil {
				t.Fatalf("Verify after the rerun: %v", err)
			}

			// Another key signs (legacy .sig tag moves): the record no
			// longer matches, the tag is read and merged again.
			signAndWrite(t, testKey(t, "other"), idx, repo)
			proxy.Reset()
			write()
			reads := 0
			for _, r := range proxy.Requests() {
				if r.Method == http.MethodGet && strings.HasSuffix(r.Path, ".sig") {
					reads++
				}
			}
			if reads == 0 {
				t.Error("the .sig tag moved but was not read back")
			}
			if _, err := Verify(context.Background(), d, policy); err != nil {
				t.Errorf("both signers after the merge: %v", err)
			}

			// A damaged record: every entry garbage.
			err = filepath.Walk(rec.dir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					err = os.WriteFile(p, []byte("{not json"), 0o600)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			write()
			if _, err := Verify(context.Background(), d, policy); err != nil {
				t.Errorf("after a damaged record: %v", err)
			}
		})
	}
}

// TestRecordNeedsEveryStatement: a record holding other statements (the
// image was signed with other annotations) does not confirm the tag.
func TestRecordNeedsEveryStatement(t *testing.T) {
	repo := mustRepo(t, memRegistry(t)+"/app")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	key := testKey(t, "cosign")
	rec, err := OpenRecord(filepath.Join(t.TempDir(), "record"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(SignerConfig{Key: key, Format: FormatLegacy})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2"} {
		sigs, err := s.Sign(context.Background(), idx, repo, WithAnnotations(map[string]string{"run": v}))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteRemote(context.Background(), repo, sigs, rec, http.DefaultTransport); err != nil {
			t.Fatal(err)
		}
		ann := map[string]any{"run": v}
		if err := cosignCheck(t, d, key.Public(), ann); err != nil {
			t.Errorf("annotation run=%s: %v", v, err)
		}
	}
}
