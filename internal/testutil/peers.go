package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// PeersFile is the list of peer tools, relative to the module root: one
// "name version how target [package] [X...]" a line, built by scripts/peers.sh.
const PeersFile = "scripts/peers.txt"

// PeersDir is where scripts/peers.sh puts the peers: $SLIPWAY_PEERS, by
// default $HOME/.cache/slipway/peers.
func PeersDir() (string, error) {
	if d := os.Getenv("SLIPWAY_PEERS"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("peers directory: %w", err)
	}
	return filepath.Join(home, ".cache", "slipway", "peers"), nil
}

// PeerSpec is one line of scripts/peers.txt.
type PeerSpec struct {
	Name, Version string
	// Binary is the file name of the built peer: the last element of its
	// package path.
	Binary string
}

// PeerPath is where scripts/peers.sh puts the peer's binary.
func (p PeerSpec) PeerPath(dir string) string {
	return filepath.Join(dir, p.Name+"-"+p.Version, p.Binary)
}

// ParsePeers parses the contents of scripts/peers.txt.
func ParsePeers(data []byte) ([]PeerSpec, error) {
	var peers []PeerSpec
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		var pkg string
		var x []string
		switch {
		case len(f) >= 4 && (f[2] == "install" || f[2] == "tool"):
			pkg, x = f[3], f[4:]
		case len(f) >= 5 && f[2] == "source":
			pkg, x = f[4], f[5:]
		default:
			return nil, fmt.Errorf("%s:%d: want \"name version install|tool package [X...]\" or \"name version source module ./package [X...]\", got %q", PeersFile, n, line)
		}
		for _, v := range x {
			if !strings.Contains(v, "=") {
				return nil, fmt.Errorf("%s:%d: -X value %q: want importpath.name=value", PeersFile, n, v)
			}
		}
		peers = append(peers, PeerSpec{Name: f[0], Version: f[1], Binary: path.Base(pkg)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", PeersFile, err)
	}
	return peers, nil
}

// ModuleRoot returns the directory of slipway's go.mod, searched upwards
// from the working directory (a package directory under go test).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/slipway-build/slipway\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of slipway above the working directory")
		}
		dir = parent
	}
}

// LoadPeers reads and parses the repository's PeersFile.
func LoadPeers() ([]PeerSpec, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, PeersFile))
	if err != nil {
		return nil, err
	}
	return ParsePeers(data)
}

// Peer returns the path of the binary of the peer tool name, as listed in
// scripts/peers.txt (the versions live only there). When it is not built
// yet, the test fails if SLIPWAY_REQUIRE_TOOLS is set (make test builds the
// peers first) and skips otherwise, with the make peers hint; it also skips
// in the unit tier (SLIPWAY_UNIT set).
func Peer(t testing.TB, name string) string {
	t.Helper()
	if os.Getenv("SLIPWAY_UNIT") != "" {
		t.Skipf("unit tier (make test-unit): no peer %s", name)
	}
	peers, err := LoadPeers()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := PeersDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Name != name {
			continue
		}
		bin := p.PeerPath(dir)
		if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
			if os.Getenv("SLIPWAY_REQUIRE_TOOLS") != "" {
				t.Fatalf("peer %s %s missing at %s (run make peers)", p.Name, p.Version, bin)
			}
			t.Skipf("peer %s %s not built (run make peers)", p.Name, p.Version)
		}
		return bin
	}
	t.Fatalf("no peer %q in %s", name, PeersFile)
	return ""
}
