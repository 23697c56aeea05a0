package trivy

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/slipway-build/slipway/scan"
)

func reasons(r *scan.Report) []string {
	var out []string
	for _, u := range r.Unjudged {
		out = append(out, u.Reason)
	}
	return out
}

// slipwayImage is img as slipway's build leaves it: the binary at bin is
// the entrypoint and the last layer's history is slipway's.
func slipwayImage(t *testing.T, bin string, data []byte) v1.Image {
	t.Helper()
	img, err := mutate.Append(image(t, amd64), mutate.Addendum{
		Layer:   layer(t, file{name: strings.TrimPrefix(bin, "/"), mode: 0o755, data: data}),
		History: v1.History{CreatedBy: "slipway build ./cmd/hello", Comment: "slipway"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = []string{bin}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Cannot judge = cannot pass: what the scanner cannot judge is reported,
// and fails the gate unless allowed.
func TestScanCannotJudge(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	debian := func(version string) []file {
		fs := debianFiles("amd64", vulnerableDebianPkgs)
		for i := range fs {
			fs[i].data = []byte(strings.ReplaceAll(string(fs[i].data), "12", version))
		}
		return fs
	}
	without := func(fs []file, name string) []file {
		return slices.DeleteFunc(slices.Clone(fs), func(f file) bool { return f.name == name })
	}
	only := func(fs []file, name string) []file {
		return slices.DeleteFunc(slices.Clone(fs), func(f file) bool { return f.name != name })
	}
	goOK := goBinary(t, "vulnapp-fixed")
	// The same binary with its build info unreadable (magic overwritten).
	stripped := bytes.ReplaceAll(goOK, []byte("\xff Go buildinf:"), []byte("\xff Go xxxxxxxx:"))
	cases := []struct {
		name string
		img  v1.Image
		want []string // nil: judged
	}{
		{"debian 12", image(t, amd64, layer(t, debianFiles("amd64", vulnerableDebianPkgs)...)), nil},
		{"package DB without an OS", image(t, amd64, layer(t, only(debian("12"), "var/lib/dpkg/status")...)), []string{scan.UnjudgedUnknownOS}},
		{"debian 99", image(t, amd64, layer(t, debian("99")...)), []string{scan.UnjudgedUnsupportedOS}},
		{"debian 10, past its end of life", image(t, amd64, layer(t, debian("10")...)), []string{scan.UnjudgedUnsupportedOS}},
		{"debian without dpkg status", image(t, amd64, layer(t, without(debian("12"), "var/lib/dpkg/status")...)), []string{scan.UnjudgedNoPackageDB}},
		{"slipway binary with build info", slipwayImage(t, "/app/hello", goOK), nil},
		{"slipway binary without build info", slipwayImage(t, "/app/hello", stripped), []string{scan.UnjudgedNoGoBuildInfo}},
		{"slipway binary with runtime.modinfo emptied", slipwayImage(t, "/app/hello", goBinaryLdflags(t, "vulnapp-fixed", "-X runtime.modinfo=")), []string{scan.UnjudgedNoGoBuildInfo}},
		{"scratch with a foreign binary", image(t, amd64, layer(t, file{name: "app/x", mode: 0o755, data: []byte("\x7fELF not go")})), nil},
	}
	local := make([]*scan.Report, len(cases))
	defer t.Run("server mode", func(t *testing.T) {
		// Through a trivy server the same is judged: same reports.
		if testing.Short() {
			t.Skip("starts trivy server")
		}
		srv := startTrivyServer(t, db, "")
		server := newScanner(t, t.TempDir(), WithServer(ServerConfig{URL: srv.URL}))
		for i, tc := range cases {
			if local[i] == nil {
				continue // failed above
			}
			if d := cmp.Diff(local[i], scanImage(t, server, tc.img), reportCmp...); d != "" {
				t.Errorf("%s: server mode reports otherwise (-local +server):\n%s", tc.name, d)
			}
		}
	})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := scanImage(t, newScanner(t, db), tc.img)
			local[i] = r
			if got := reasons(r); !slices.Equal(got, tc.want) {
				t.Fatalf("unjudged = %+v, want %v", r.Unjudged, tc.want)
			}
			err := scan.Gate(r, scan.Policy{Severities: []scan.Severity{scan.SeverityCritical}})
			var cj *scan.CannotJudgeError
			if tc.want == nil {
				if errors.As(err, &cj) {
					t.Fatalf("Gate = %v", err)
				}
				return
			}
			if !errors.As(err, &cj) || !strings.HasPrefix(err.Error(), "cannot judge: linux/amd64: ") {
				t.Fatalf("Gate = %v, want cannot judge", err)
			}
			if err := scan.Gate(r, scan.Policy{Severities: []scan.Severity{scan.SeverityCritical}, AllowUnjudged: tc.want}); err != nil {
				t.Fatalf("allowed: Gate = %v", err)
			}
		})
	}
}

func TestScanDBFromFuture(t *testing.T) {
	img := image(t, amd64, layer(t, file{name: "app/server", mode: 0o755, data: goBinary(t, "vulnapp-fixed")}))
	for _, tc := range []struct {
		ahead time.Duration
		want  []string
	}{
		{30 * time.Minute, nil},
		{3 * time.Hour, []string{scan.UnjudgedDBFromFuture}},
	} {
		r, err := newScanner(t, fixtureDB(t, now.Add(tc.ahead))).ScanImage(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		if got := reasons(r); !slices.Equal(got, tc.want) {
			t.Errorf("DB %s ahead: unjudged = %+v, want %v", tc.ahead, r.Unjudged, tc.want)
		}
	}
}
