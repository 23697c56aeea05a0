package stage

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
	"github.com/slipway-build/slipway/sign/vocab"
)

// TestAttestationPathsRelative (issue 14 item 12): a target configured
// with absolute paths (dir, main, files, an oci: base, the ignore file
// of a suppression, the VEX document of another) is attested with paths relative to the repository
// (its git top level): no payload of any attestation names the local
// directories.
func TestAttestationPathsRelative(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	ctx := context.Background()
	_, file, _, _ := runtime.Caller(0)
	app := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "apps", "hello")
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "checkout")
	svc := filepath.Join(repo, "services", "hello")
	if err := os.CopyFS(svc, os.DirFS(app)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	conf := filepath.Join(repo, "conf")
	os.MkdirAll(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "app.yaml"), []byte("x: 1\n"), 0o644)
	ignore := filepath.Join(repo, ".trivyignore.yaml")

	plat, _ := build.ParsePlatform("linux/amd64")
	g, err := build.New(build.WithCACertificates(build.CANone), build.WithBinaryCache(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	tg := build.Target{Name: "hello", Dir: svc, Main: "./cmd/hello", Platforms: []v1.Platform{plat},
		Base: &build.Base{Name: build.Scratch, MediaType: types.OCIImageIndex}, Created: time.Unix(1700000000, 0),
		Files: []build.File{{Src: conf, Dst: "/etc/app"}}}
	res, err := g.Build(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	digest := "@sha256:" + strings.Repeat("1", 64)
	base := "oci:" + filepath.Join(repo, "bases", "distroless") + digest
	j := pipeline.Job{Target: tg, BaseRef: base, Git: pipeline.GitInfo{Commit: strings.Repeat("c", 40), Remote: filepath.Join(tmp, "origin.git")}}
	finding := scan.Finding{ID: "CVE-2099-0001", Severity: scan.SeverityHigh, PkgName: "example.com/x", InstalledVersion: "v1.0.0",
		Platforms: []string{"linux/amd64"}, Suppressed: &scan.Suppression{Rule: ignore + ":CVE-2099-0001", Statement: "not reachable"}}
	vexFinding := scan.Finding{ID: "CVE-2099-0002", Severity: scan.SeverityHigh, PkgName: "example.com/y", InstalledVersion: "v1.0.0",
		Platforms: []string{"linux/amd64"}, Suppressed: &scan.Suppression{Rule: "vex:" + filepath.Join(repo, "vex", "app.openvex.json"),
			Statement: "not_affected: component_not_present", Kind: scan.SuppressedByVEX, Status: "not_affected", Justification: "component_not_present"}}
	trivy, _ := json.Marshal(map[string]any{"SchemaVersion": 2, "ArtifactName": res.Digest.String(), "Results": []any{map[string]any{
		"Target": "linux/amd64: app/hello", "Class": "lang-pkgs", "Type": "gobinary",
		"Vulnerabilities": []any{
			map[string]any{"VulnerabilityID": finding.ID, "PkgName": finding.PkgName, "InstalledVersion": finding.InstalledVersion, "Severity": "HIGH"},
			map[string]any{"VulnerabilityID": vexFinding.ID, "PkgName": vexFinding.PkgName, "InstalledVersion": vexFinding.InstalledVersion, "Severity": "HIGH"},
		},
	}}})
	report := &scan.Report{Subject: res.Digest.String(), Scanner: scan.ScannerInfo{Name: "trivy", Version: "v0.74.0"},
		DB: scan.DBInfo{SchemaVersion: 2, UpdatedAt: time.Now().Add(-time.Hour)}, StartedAt: time.Now(), FinishedAt: time.Now(),
		Platforms: []string{"linux/amd64"}, Findings: []scan.Finding{finding, vexFinding}, TrivyReport: trivy}

	for _, tc := range []struct {
		name string
		cfg  pipeline.Target
		opts []Option
	}{
		// Absolute paths in the config, the root found by the stage.
		{"absolute", pipeline.Target{Name: "hello", Dir: svc, Main: filepath.Join(svc, "cmd", "hello"), Base: base,
			Files: []pipeline.FileConfig{{Src: conf, Dst: "/etc/app"}}}, nil},
		// Paths relative to a config in deploy/, the root and config
		// directory given (what the command passes).
		{"relative to the config", pipeline.Target{Name: "hello", Dir: "../services/hello", Main: "./cmd/hello", Base: "oci:../bases/distroless" + digest,
			Files: []pipeline.FileConfig{{Src: "../conf", Dst: "/etc/app"}}}, []Option{WithSourceRoot(repo, filepath.Join(repo, "deploy"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jj := j
			jj.BaseRef = tc.cfg.Base
			opts := append([]Option{WithAttestations(vocab.KindProvenance, vocab.KindVuln), WithTargets([]pipeline.Target{tc.cfg})}, tc.opts...)
			s, err := New(sign.SignerConfig{Key: testKey(t)}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			sigs, err := s.Sign(ctx, jj, res, report)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "oci")
			if err := sigs.WriteLayout(out); err != nil {
				t.Fatal(err)
			}
			payloads := layoutPayloads(t, out)
			if len(payloads) == 0 {
				t.Fatal("no attestation payload in the layout")
			}
			all := strings.Join(payloads, "\n")
			home, _ := os.UserHomeDir()
			for _, local := range []string{tmp, filepath.Dir(tmp), home} {
				if local != "" && local != "/" && strings.Contains(all, local) {
					t.Errorf("an attestation names the local path %s", local)
				}
			}
			// The paths are there, relative to the checkout.
			for _, want := range []string{`"dir":"services/hello"`, `"main":"./cmd/hello"`, `"src":"conf"`,
				`"base":"oci:bases/distroless@sha256:`, `.trivyignore.yaml:CVE-2099-0001`, `"rule":"vex:vex/app.openvex.json"`} {
				if !strings.Contains(all, want) {
					t.Errorf("no attestation holds %s", want)
				}
			}
			if t.Failed() {
				t.Logf("payloads:\n%s", all)
			}
		})
	}
}

// layoutPayloads returns every blob of the layout at dir, with every
// base64 "payload" field of a JSON blob (DSSE envelopes, bundles) decoded.
func layoutPayloads(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "payload" {
					if b, err := base64.StdEncoding.DecodeString(s); err == nil {
						out = append(out, string(b))
						continue
					}
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, string(b))
		var v any
		if json.NewDecoder(bytes.NewReader(b)).Decode(&v) == nil {
			walk(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
