package trivy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway-build/slipway/scan"
)

// TestMain hooks the dialers of the default transports of net/http and
// ggcr: a dial to any address other than loopback is refused and fails the
// run. TestScanInEmptyNetworkNamespace checks the scan as a whole (every
// dial, any transport) by running it where no network exists.
func TestMain(m *testing.M) {
	for _, rt := range []http.RoundTripper{http.DefaultTransport, remote.DefaultTransport} {
		tr, ok := rt.(*http.Transport)
		if !ok {
			fmt.Fprintf(os.Stderr, "cannot hook %T\n", rt)
			os.Exit(2)
		}
		tr.DialContext = loopbackDial(tr.DialContext)
	}
	code := m.Run()
	if v := blockedDials(); len(v) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: requests to non-loopback hosts: %v\n", v)
		code = 1
	}
	os.Exit(code)
}

var (
	blockedMu sync.Mutex
	blocked   []string
)

func blockedDials() []string {
	blockedMu.Lock()
	defer blockedMu.Unlock()
	return append([]string(nil), blocked...)
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func loopbackDial(next dialFunc) dialFunc {
	if next == nil {
		next = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			blockedMu.Lock()
			blocked = append(blocked, network+":"+addr)
			blockedMu.Unlock()
			return nil, fmt.Errorf("test forbids dialling %s", addr)
		}
		return next(ctx, network, addr)
	}
}

const helperEnv = "SLIPWAY_TRIVY_HELPER"

// TestHelperProcess is not a test: it is the other process of the
// multi-process tests (run with SLIPWAY_TRIVY_HELPER set). It scans the
// helper image with the DB and cache dirs from the environment and prints
// the finding ids.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process only")
	}
	s, err := New(WithDBDir(os.Getenv("HELPER_DB")), WithCacheDir(os.Getenv("HELPER_CACHE")), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.ImageIndex
	if dir := os.Getenv("HELPER_LAYOUT"); dir != "" {
		// The benchmark's image, read from an OCI layout as slipway reads
		// an oci: reference.
		p, err := layout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		outer, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := outer.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if idx, err = outer.ImageIndex(im.Manifests[0].Digest); err != nil {
			t.Fatal(err)
		}
	} else {
		bin, err := os.ReadFile(os.Getenv("HELPER_BIN"))
		if err != nil {
			t.Fatal(err)
		}
		idx = appOnDebian(t, bin)
	}
	r, err := s.Scan(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT %s\n", summary(r))
	// The peak RSS of this process image (exec resets it; getrusage's
	// maxrss would include the parent's, shared before exec).
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				fmt.Printf("VMHWM %s\n", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			}
		}
	}
}

// appOnDebian is the image the helper process and the tests scan: a
// two-platform Debian base with the vulnerable Go app on top.
func appOnDebian(t testing.TB, bin []byte) v1.ImageIndex {
	return index(t,
		image(t, amd64, layer(t, debianFiles("amd64", vulnerableDebianPkgs)...), layer(t, file{name: "app/server", mode: 0o755, data: bin})),
		image(t, arm64, layer(t, debianFiles("arm64", vulnerableDebianPkgs)...), layer(t, file{name: "app/server", mode: 0o755, data: bin})))
}

func summary(r *scan.Report) string {
	var ids []string
	for _, f := range r.Findings {
		ids = append(ids, fmt.Sprintf("%s/%s@%s[%s]", f.ID, f.PkgName, f.InstalledVersion, strings.Join(f.Platforms, "+")))
	}
	return strings.Join(ids, ",")
}

func helperCmd(t *testing.T, db, cache, bin string, wrap ...string) *exec.Cmd {
	args := append(wrap, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"=1", "HELPER_DB="+db, "HELPER_CACHE="+cache, "HELPER_BIN="+bin)
	return cmd
}

func helperResult(t *testing.T, out []byte) string {
	t.Helper()
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "RESULT "); ok {
			return s
		}
	}
	t.Fatalf("helper printed no result:\n%s", out)
	return ""
}

func TestConcurrentScansShareCache(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	binPath := filepath.Join(t.TempDir(), "server")
	bin := goBinary(t, "vulnapp")
	if err := os.WriteFile(binPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		cache := t.TempDir()
		// Another process and two independent Scanners in this one start
		// together on an empty cache, so they analyse and write the same
		// layers at the same time.
		cmd := helperCmd(t, db, cache, binPath)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		results := make([]string, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				s, err := New(WithDBDir(db), WithCacheDir(cache), WithClock(clock))
				if err != nil {
					errs[i] = err
					return
				}
				r, err := s.Scan(context.Background(), appOnDebian(t, bin))
				if err != nil {
					errs[i] = err
					return
				}
				results[i] = summary(r)
			})
		}
		wg.Wait()
		werr := cmd.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: in-process scan: %v", round, err)
			}
		}
		if werr != nil {
			t.Fatalf("round %d: helper process: %v\n%s", round, werr, out.String())
		}
		other := helperResult(t, []byte(out.String()))
		if results[0] != results[1] || results[0] != other {
			t.Errorf("round %d: results differ:\n%s\n%s\n%s", round, results[0], results[1], other)
		}
		for _, want := range []string{"CVE-2022-32149/golang.org/x/text@v0.3.7[linux/amd64+linux/arm64/v8]", "CVE-2023-4911/libc6"} {
			if !strings.Contains(other, want) {
				t.Errorf("round %d: %s missing from %s", round, want, other)
			}
		}
		checkCacheFiles(t, cache)
	}
}

// checkCacheFiles asserts every cache entry is complete JSON and no
// temporary file was left behind.
func checkCacheFiles(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary cache file left: %s", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			t.Errorf("corrupt cache entry %s", p)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 { // four layers and two images at least
		t.Errorf("only %d cache entries", n)
	}
}

func TestScanInEmptyNetworkNamespace(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed")
	}
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		if os.Getenv("SLIPWAY_REQUIRE_TOOLS") != "" {
			t.Fatalf("unshare --net: %v: %s", err, out)
		}
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	db := fixtureDB(t, now.Add(-time.Hour))
	binPath := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(binPath, goBinary(t, "vulnapp"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A new network namespace has only a loopback interface, and it is
	// down: any connection attempt, to any address, fails.
	out, err := helperCmd(t, db, t.TempDir(), binPath, "unshare", "--net").CombinedOutput()
	if err != nil {
		t.Fatalf("scan without network: %v\n%s", err, out)
	}
	res := helperResult(t, out)
	for _, want := range []string{"CVE-2022-32149/golang.org/x/text", "CVE-2023-4911/libc6", "CVE-2011-3374/apt"} {
		if !strings.Contains(res, want) {
			t.Errorf("%s missing from %s", want, res)
		}
	}
}
