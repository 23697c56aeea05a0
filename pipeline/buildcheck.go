package pipeline

import (
	"fmt"
	"strings"

	"github.com/slipway-build/slipway/build"
)

// refusedFlags are go build flags a target may not set (in flags: or in
// GOFLAGS), with what to do instead: slipway sets them itself, or they
// would give a binary other than the one the scan judges and the
// signature covers.
var refusedFlags = map[string]string{
	"toolexec":  "a -toolexec program runs instead of the compiler and linker and can change the binary; slipway does not allow it",
	"ldflags":   "use the target's ldflags: list (appended after -s -w)",
	"o":         "slipway decides where the binary goes (/app/<target> in the image); remove it",
	"buildmode": "images hold a static executable (the default build mode); remove it",
	"buildvcs":  "slipway passes -buildvcs=auto so the binary keeps its VCS stamp; remove it",
}

// refusedEnv are variables a target's env: may not set, with what to do
// instead.
var refusedEnv = map[string]string{
	"CGO_ENABLED": "images hold static binaries (CGO_ENABLED=0): a cgo binary is dynamically linked and cannot start on scratch or a static base; remove it",
	"GOOS":        "the platform decides it: set platforms: (e.g. [linux/arm64])",
	"GOARCH":      "the platform decides it: set platforms: (e.g. [linux/arm64])",
	"GOARM":       "the platform variant decides it: use a platform such as linux/arm/v6",
	"GOAMD64":     "the platform variant decides it: use a platform such as linux/amd64/v3",
}

// flagName returns the name of a command-line flag in any of the forms Go
// accepts (-x, --x, -x=v, --x=v), or "" when s is not a flag.
func flagName(s string) string {
	if !strings.HasPrefix(s, "-") || s == "-" || s == "--" {
		return ""
	}
	n := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "-")
	n, _, _ = strings.Cut(n, "=")
	return n
}

// checkTargetBuild refuses what in a target's flags: and env: would give an
// image that cannot run or that would defeat the gate. It returns the
// offending key (relative to the target) and the message, or "" when the
// target is acceptable.
func checkTargetBuild(t *Target, secret []string) (key, msg string) {
	for i, f := range t.Flags {
		if why, ok := refusedFlags[flagName(f)]; ok {
			return fmt.Sprintf("flags[%d]", i), fmt.Sprintf("%q is not allowed: %s", f, why)
		}
	}
	for i, e := range t.Env {
		k, v, _ := strings.Cut(e, "=")
		if why, ok := refusedEnv[k]; ok {
			return fmt.Sprintf("env[%d]", i), fmt.Sprintf("%s is not allowed: %s", k, why)
		}
		if build.IsSecretEnv(k, secret) {
			return fmt.Sprintf("env[%d]", i), fmt.Sprintf("%s holds a credential of slipway's and is kept out of go build; remove it", k)
		}
		if k == "GOFLAGS" {
			for _, f := range strings.Fields(v) {
				if why, ok := refusedFlags[flagName(f)]; ok {
					return fmt.Sprintf("env[%d]", i), fmt.Sprintf("GOFLAGS %q is not allowed: %s", f, why)
				}
			}
		}
	}
	return "", ""
}

// checkLdflags refuses linker flags that would overwrite the build info
// scanners read the module versions from: -X of a variable in runtime or
// runtime/debug (runtime.modinfo, …). ldflags are checked after template
// expansion, split the way go build splits -ldflags.
func checkLdflags(ldflags []string) error {
	fields, err := splitQuoted(strings.Join(ldflags, " "))
	if err != nil {
		return fmt.Errorf("%v; quote each value with matching ' or \"", err)
	}
	for i, f := range fields {
		var def string
		switch {
		case f == "-X" || f == "--X":
			if i+1 < len(fields) {
				def = fields[i+1]
			}
		case strings.HasPrefix(f, "-X=") || strings.HasPrefix(f, "--X="):
			_, def, _ = strings.Cut(f, "=")
		default:
			continue
		}
		sym, _, _ := strings.Cut(def, "=")
		pkg := sym
		if j := strings.LastIndex(sym, "."); j >= 0 {
			pkg = sym[:j]
		}
		if pkg == "runtime" || strings.HasPrefix(pkg, "runtime/") {
			return fmt.Errorf("-X %s is not allowed: it would overwrite the build info that scanners read the module versions from; set only your own variables (e.g. -X main.version=…)", sym)
		}
	}
	return nil
}

// splitQuoted splits s into fields as go build splits -ldflags (cmd/internal/quoted):
// space-separated, with '…' or "…" around a field and no unescaping.
func splitQuoted(s string) ([]string, error) {
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	var f []string
	for len(s) > 0 {
		for len(s) > 0 && space(s[0]) {
			s = s[1:]
		}
		if len(s) == 0 {
			break
		}
		if s[0] == '"' || s[0] == '\'' {
			q := s[0]
			s = s[1:]
			i := strings.IndexByte(s, q)
			if i < 0 {
				return nil, fmt.Errorf("unterminated %c string", q)
			}
			f = append(f, s[:i])
			s = s[i+1:]
			continue
		}
		i := 0
		for i < len(s) && !space(s[i]) {
			i++
		}
		f = append(f, s[:i])
		s = s[i:]
	}
	return f, nil
}

// secretEnv are the variables holding sign.key (env://VAR) and the Trivy
// server's token (scan.server_token_env), which join build.SecretEnv as
// secrets: kept out of go build and templates.
func secretEnv(c *Config) []string {
	var out []string
	if v, ok := strings.CutPrefix(c.Sign.Key, "env://"); ok && v != "" {
		out = append(out, v)
	}
	if c.Scan.ServerTokenEnv != "" {
		out = append(out, c.Scan.ServerTokenEnv)
	}
	return out
}
