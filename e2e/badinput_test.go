package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/testutil"
)

func TestBadInput(t *testing.T) {
	reg := testutil.StartRegistry(t)
	app := copyApp(t, "hello")
	good := fmt.Sprintf(helloConfig, reg.Host)
	cases := []struct {
		name, config string
		args         []string
		code         int
		want         string
	}{
		{"missing main", strings.Replace(good, "./cmd/worker", "./cmd/nope", 1), nil, 1, "cmd/nope"},
		{"unknown platform", strings.Replace(good, "linux/arm64", "linux/sparc", 1), nil, 2, "linux/sparc"},
		{"unknown key", strings.Replace(good, "    main: ./cmd/worker", "    mian: ./cmd/worker", 1), nil, 2, `targets[].mian: unknown key`},
		{"bad reference", strings.Replace(good, "base: scratch", "base: 'Not A Ref::'", 1), nil, 2, "base"},
		{"bad repository", strings.Replace(good, reg.Host+"/team", "UPPER/Case", 1), nil, 2, "repository"},
		{"unreachable registry", strings.Replace(good, reg.Host, fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), 1), nil, 1, "connection refused"},
		{"unreachable base", strings.Replace(good, "base: scratch", fmt.Sprintf("base: 127.0.0.1:%d/base:1", testutil.FreePort(t)), 1), nil, 1, "base"},
		// Issue 9 items 8 and 9: refused before anything is built or written.
		{"library main", strings.Replace(good, "./cmd/worker", "./lib", 1), nil, 2, "slipway.yaml:15: targets[1].main: ./lib is package lib"},
		{"cgo env", strings.Replace(good, "    main: ./cmd/worker\n", "    main: ./cmd/worker\n    env: [CGO_ENABLED=1]\n", 1), nil, 2, "slipway.yaml:16: targets[1].env[0]: CGO_ENABLED"},
		{"toolexec flag", strings.Replace(good, "    main: ./cmd/worker\n", "    main: ./cmd/worker\n    flags: [--toolexec=/bin/true]\n", 1), nil, 2, "slipway.yaml:16: targets[1].flags[0]"},
		{"windows platform", strings.Replace(good, "linux/arm64", "windows/amd64", 1), nil, 2, "Linux images only"},
		{"secret in template", strings.Replace(good, "{{.Env.APP_VERSION}}", "{{.Env.COSIGN_PASSWORD}}", 1), nil, 2, "slipway.yaml:7: targets[0].ldflags: template \"-X main.version={{.Env.COSIGN_PASSWORD}}\" reads COSIGN_PASSWORD, which holds a credential"},
	}
	writeFile(t, app, "lib/lib.go", "package lib\n")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			writeFile(t, app, "slipway.yaml", c.config)
			r := slipway(t, app, []string{"APP_VERSION=x"}, append([]string{"build", "--push"}, c.args...)...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, c.code, r)
			}
			if r.stdout != "" {
				t.Fatalf("stdout not empty: %q", r.stdout)
			}
			last := lastLine(r.stderr)
			if !strings.HasPrefix(last, "slipway: ") || !strings.Contains(last, c.want) {
				t.Fatalf("error line %q does not name %q\n%s", last, c.want, r)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "slipway: ") != 1 {
				t.Fatalf("want one error line:\n%s", r.stderr)
			}
			assertNoTags(t, reg)
		})
	}
}
