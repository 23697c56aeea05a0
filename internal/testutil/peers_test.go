package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePeers(t *testing.T) {
	got, err := ParsePeers([]byte("# comment\n\na v1 install example.com/x/cmd/tool example.com/x/v.v={v}\nb v2 source example.com/y ./cmd/tester\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []PeerSpec{{Name: "a", Version: "v1", Binary: "tool"}, {Name: "b", Version: "v2", Binary: "tester"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got)\n%s", d)
	}
	for _, bad := range []string{"a v1", "a v1 install", "a v1 source example.com/y", "a v1 build x", "a v1 install example.com/x noequals"} {
		if _, err := ParsePeers([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestPeersFile checks the repository's list: every peer the tests use is
// named, and Peer finds a built one where scripts/peers.sh puts it.
func TestPeersFile(t *testing.T) {
	peers, err := LoadPeers()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, p := range peers {
		names[p.Name] = p.Binary
	}
	want := map[string]string{"cosign-v3": "cosign", "cosign-v2": "cosign", "fulcio": "fulcio",
		"timestamp-server": "timestamp-server", "policy-tester": "tester", "trivy": "trivy",
		"kyverno": "kubectl-kyverno"}
	if d := cmp.Diff(want, names); d != "" {
		t.Fatalf("peers (-want +got)\n%s", d)
	}

	dir := t.TempDir()
	t.Setenv("SLIPWAY_PEERS", dir)
	t.Setenv("SLIPWAY_UNIT", "")
	p := peers[0]
	bin := p.PeerPath(dir)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Peer(t, p.Name); got != bin {
		t.Fatalf("Peer(%s) = %s, want %s", p.Name, got, bin)
	}
}
