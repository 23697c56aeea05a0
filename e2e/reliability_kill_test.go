package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/slipway-build/slipway/internal/testutil"
)

// killRuns is K, the number of `slipway run --push` processes killed.
const killRuns = 20

// arrival is a request as it reached the proxy (before it was answered).
type arrival struct {
	at     time.Duration // since the run started
	method string
	path   string
}

// stampedRun is one `slipway run --push`, its stderr lines and the
// requests that reached the proxy, each with its time since the start.
type stampedRun struct {
	start time.Time
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []arrival // method empty; path holds the line
	reqs  []arrival
	done  chan error
	out   bytes.Buffer
}

func (r *stampedRun) seen(markers []arrival, before time.Duration, substr string) bool {
	return r.count(markers, before, substr) > 0
}

func (r *stampedRun) count(markers []arrival, before time.Duration, substr string) int {
	n := 0
	for _, l := range markers {
		if l.at <= before && strings.Contains(l.path, substr) {
			n++
		}
	}
	return n
}

// phase names the stage a kill at elapsed hit, from the requests that had
// reached the registry (upload, signatures, tags) and, before any upload,
// from the log lines: building, scanning, one "scanned platform" per
// platform, then signing (which makes the SBOM and attestations).
func (r *stampedRun) phase(elapsed time.Duration, platforms int) string {
	r.mu.Lock()
	reqs := append([]arrival(nil), r.reqs...)
	lines := append([]arrival(nil), r.lines...)
	r.mu.Unlock()
	var scanningAt time.Duration = -1
	for _, l := range lines {
		if strings.Contains(l.path, `"msg":"scanning"`) && l.at <= elapsed {
			scanningAt = l.at
			break
		}
	}
	ph := ""
	for _, q := range reqs {
		if q.at > elapsed || scanningAt < 0 || q.at < scanningAt {
			continue // not yet, or the preflight check before the build
		}
		switch {
		case q.method == http.MethodPut && strings.Contains(q.path, "/manifests/") && !strings.Contains(q.path, "/manifests/sha256"):
			return "tag"
		case strings.Contains(q.path, "/manifests/sha256-"):
			ph = "signatures"
		case ph == "":
			ph = "upload"
		}
	}
	switch {
	case ph != "":
		return ph
	case scanningAt >= 0 && r.count(lines, elapsed, `"msg":"scanned platform"`) >= platforms:
		return "sign"
	case scanningAt >= 0:
		return "scan"
	case r.seen(lines, elapsed, `"msg":"building"`):
		return "build"
	}
	return "start"
}

// TestKillDuringRunPush SIGKILLs `slipway run --push` K times at seeded
// random points spread over a calibrated run (each run builds a new image,
// so every run uploads new blobs; the proxy slows registry writes so kills
// land mid-upload). After every kill: each tag in the repository resolves
// to an index that pulls and validates, has its .sig tag and passes
// `slipway verify` (signatures and the three attestations); each .sig/.att
// tag belongs to a manifest that exists; then a final run completes.
func TestKillDuringRunPush(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 20 pipeline runs")
	}
	reg := testutil.StartRegistry(t)
	proxy := testutil.StartProxy(t, reg.URL())
	dir := t.TempDir()
	db := fixtureDB(t)
	key, pub := demoKey(t, dir, "pw")
	writeFile(t, dir, "slipway.yaml", fmt.Sprintf(`repository: %s/team
platforms: [linux/amd64, linux/arm64]
targets:
  - name: hello
    dir: %s
    main: ./cmd/hello
    ldflags: ["-X main.version={{.Env.RUN}}"]
    tags: [latest, "run-{{.Env.RUN}}"]
scan:
  db: {dir: %s}
  cache_dir: %s
sign:
  key: %s
  attestations: [sbom, vuln, provenance]
policy:
  keys: [%s]
  require_attestations: [sbom, vuln, provenance]
`, proxy.Host, filepath.Join(repoRoot(), "testdata", "apps", "hello"), db, filepath.Join(dir, "scan-cache"), key, pub))

	var cur struct {
		sync.Mutex
		run *stampedRun
	}
	proxy.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		cur.Lock()
		run := cur.run
		cur.Unlock()
		if run != nil {
			run.mu.Lock()
			run.reqs = append(run.reqs, arrival{at: time.Since(run.start), method: r.Method, path: r.URL.Path})
			run.mu.Unlock()
		}
		if r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Method == http.MethodPost {
			time.Sleep(25 * time.Millisecond) // widen the write window
		}
		return false
	})
	start := func(runID string) *stampedRun {
		r := &stampedRun{done: make(chan error, 1)}
		r.cmd = exec.Command(slipwayBin, "run", "--push", "--verbose", "--log-format", "json")
		r.cmd.Dir = dir
		r.cmd.Env = append(baseEnv(t), "COSIGN_PASSWORD=pw", "RUN="+runID)
		stderr, err := r.cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		r.cmd.Stdout = &r.out
		cur.Lock()
		cur.run = r
		cur.Unlock()
		r.start = time.Now()
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				r.mu.Lock()
				r.lines = append(r.lines, arrival{at: time.Since(r.start), path: sc.Text()})
				r.mu.Unlock()
			}
			r.done <- r.cmd.Wait()
		}()
		return r
	}
	stderrOf := func(r *stampedRun) string {
		r.mu.Lock()
		defer r.mu.Unlock()
		var b strings.Builder
		for _, l := range r.lines {
			b.WriteString(l.path + "\n")
		}
		return b.String()
	}

	// Calibration: one complete run gives the duration to spread kills
	// over and the end of its scan.
	calib := start("calibration")
	select {
	case err := <-calib.done:
		if err != nil {
			t.Fatalf("calibration run: %v\n%s", err, stderrOf(calib))
		}
	case <-time.After(5 * time.Minute):
		calib.cmd.Process.Kill()
		t.Fatalf("calibration run did not finish in 5m\n%s", stderrOf(calib))
	}
	total := time.Since(calib.start)
	t.Logf("calibration run: %s", total.Round(time.Millisecond))

	repo, err := name.NewRepository(reg.Host + "/team/hello")
	if err != nil {
		t.Fatal(err)
	}
	verified := map[string]string{} // tag → digest already checked
	check := func(label string) {
		t.Helper()
		tags, err := remote.List(repo)
		if err != nil {
			t.Fatalf("%s: listing tags: %v", label, err)
		}
		have := map[string]bool{}
		for _, tag := range tags {
			have[tag] = true
		}
		for _, tag := range tags {
			desc, err := remote.Get(repo.Tag(tag))
			if err != nil {
				t.Fatalf("%s: dangling tag %s: %v", label, tag, err)
			}
			if strings.HasPrefix(tag, "sha256-") {
				// A signature or attestation tag: its subject exists.
				hex := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(tag, "sha256-"), ".sig"), ".att")
				if _, err := remote.Head(repo.Digest("sha256:" + hex)); err != nil {
					t.Fatalf("%s: %s is for a manifest the registry does not have: %v", label, tag, err)
				}
				continue
			}
			if verified[tag] == desc.Digest.String() {
				continue
			}
			idx, err := desc.ImageIndex()
			if err != nil {
				t.Fatalf("%s: tag %s: %v", label, tag, err)
			}
			if err := validate.Index(idx); err != nil {
				t.Fatalf("%s: tag %s points at an invalid image: %v", label, tag, err)
			}
			if sig := "sha256-" + desc.Digest.Hex + ".sig"; !have[sig] {
				t.Fatalf("%s: tag %s (%s) has no signature tag %s", label, tag, desc.Digest, sig)
			}
			if v := slipway(t, dir, nil, "verify", repo.Tag(tag).String()); v.code != 0 {
				t.Fatalf("%s: verify %s: %s", label, tag, v)
			}
			verified[tag] = desc.Digest.String()
		}
	}
	check("after calibration")

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	// Stratified delays: one in each of K equal slices of the calibrated
	// run, shuffled; a run that finishes before its kill is not counted,
	// and its slice is drawn again (at most 2K runs in all).
	var delays []time.Duration
	refill := func() {
		for i := range killRuns {
			delays = append(delays, time.Duration((float64(i)+rng.Float64())/killRuns*float64(total)))
		}
		rng.Shuffle(len(delays), func(i, j int) { delays[i], delays[j] = delays[j], delays[i] })
	}
	phases := map[string]int{}
	var points []string
	kills := 0
	for i := 0; kills < killRuns && i < 2*killRuns; i++ {
		if len(delays) == 0 {
			refill()
		}
		d := delays[0]
		delays = delays[1:]
		r := start(fmt.Sprintf("%d", i))
		select {
		case err := <-r.done:
			if err != nil {
				t.Fatalf("run %d exited by itself with %v before its kill at %s\n%s", i, err, d, stderrOf(r))
			}
			points = append(points, fmt.Sprintf("%s:completed", d.Round(time.Millisecond)))
		case <-time.After(d):
			elapsed := time.Since(r.start)
			r.cmd.Process.Kill()
			select {
			case <-r.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("run %d did not die after SIGKILL", i)
			}
			ph := r.phase(elapsed, 2)
			phases[ph]++
			kills++
			points = append(points, fmt.Sprintf("%s:%s", elapsed.Round(time.Millisecond), ph))
		}
		check(fmt.Sprintf("after run %d (kill at %s)", i, d.Round(time.Millisecond)))
	}
	cur.Lock()
	cur.run = nil
	cur.Unlock()
	if kills < killRuns {
		t.Fatalf("only %d runs of %d were killed (the rest finished first): %v", kills, len(points), points)
	}

	final := slipway(t, dir, []string{"COSIGN_PASSWORD=pw", "RUN=final"}, "run", "--push")
	if final.code != 0 {
		t.Fatalf("run after %d kills: %s", kills, final)
	}
	check("after the final run")
	if v := slipway(t, dir, nil, "verify", repo.Tag("run-final").String()); v.code != 0 {
		t.Fatalf("verify final: %s", v)
	}
	var ps []string
	for p, n := range phases {
		ps = append(ps, fmt.Sprintf("%s=%d", p, n))
	}
	sort.Strings(ps)
	t.Logf("K=%d kills (seed %d), by phase: %s; points: %s", kills, seed, strings.Join(ps, " "), strings.Join(points, " "))
}
