package sign

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

// Issue 9 item 1: a trusted key may be given as the PEM text itself.
func TestLoadPublicKeysInlinePEM(t *testing.T) {
	path := filepath.Join("..", "testdata", "keys", "cosign.pub")
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadPublicKeys("\n" + string(pem))
	if err != nil {
		t.Fatalf("inline PEM: %v", err)
	}
	if want := testPub(t, "cosign"); keys[0].ID() != want.ID() {
		t.Fatalf("inline key ID %s, want %s", keys[0].ID(), want.ID())
	}
	if keys[0].Ref() != "(inline PEM)" {
		t.Errorf("ref = %q", keys[0].Ref())
	}
	if _, err := LoadPublicKeys("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"); err == nil {
		t.Fatal("a broken inline PEM key loaded")
	}
}

// Issue 9 item 3: the verdict reports the vuln scan it relied on (the
// newest trusted one) and the rollback window.
func TestVerdictReportsScan(t *testing.T) {
	repo := mustRepo(t, realRegistry(t)+"/team/scan")
	key := testKey(t, "cosign")
	idx := testIndex(t)
	d := pushIndex(t, repo, "v1", idx)
	finished := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	signAndWrite(t, key, idx, repo, WithVulnReport(testReport(t, idx, finished, scan.SeverityLow)))
	v, err := Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}, RequireAttestations: []string{vocab.KindVuln}, MaxScanAge: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if v.Scan == nil || !v.Scan.FinishedOn.Equal(finished) || v.Scan.MaxAge != "24h0m0s" || v.Scan.KeyID != key.Public().ID() || v.Scan.Attestation == "" {
		t.Fatalf("scan = %+v, want finished %s, max age 24h", v.Scan, finished)
	}
	// Off: still reported, without a window.
	v, err = Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}, RequireAttestations: []string{vocab.KindVuln}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Scan == nil || !v.Scan.FinishedOn.Equal(finished) || v.Scan.MaxAge != "" {
		t.Fatalf("scan without max age = %+v", v.Scan)
	}
	// Too old for the window: denied, and the scan is still reported.
	v, err = Verify(context.Background(), d, Policy{Keys: []*PublicKey{key.Public()}, MaxScanAge: time.Hour})
	if err == nil || v == nil || v.Scan == nil || !v.Scan.FinishedOn.Equal(finished) {
		t.Fatalf("stale: verdict %+v, err %v", v, err)
	}
}
