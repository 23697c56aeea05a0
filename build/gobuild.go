package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GoBuildError is a failed `go build`; Output is what the go command printed,
// verbatim.
type GoBuildError struct {
	Target   string
	Platform string
	Output   string
	Err      error
}

// Error quotes the go command's first error: a compiler's "file:line:col:
// message" when there is one, else its first line that is not progress
// ("go: downloading …") or a "# package" header. Output has all of it.
func (e *GoBuildError) Error() string {
	first, more := firstGoError(e.Output)
	if first == "" {
		return fmt.Sprintf("go build %s for %s: %v", e.Target, e.Platform, e.Err)
	}
	if more {
		first += " (and more; -v shows go's whole output)"
	}
	return fmt.Sprintf("go build %s for %s: %s", e.Target, e.Platform, first)
}

// goPosition matches the start of a compiler or vet diagnostic.
var goPosition = regexp.MustCompile(`^[^\s:][^:]*\.(go|s|mod|work):\d+(:\d+)?: `)

// firstGoError picks the line of out that says what failed, and whether out
// has other lines that are not progress.
func firstGoError(out string) (string, bool) {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.TrimSpace(l) == "",
			strings.HasPrefix(l, "# "),
			strings.HasPrefix(l, "go: downloading "),
			strings.HasPrefix(l, "go: finding "),
			strings.HasPrefix(l, "go: extracting "),
			strings.HasPrefix(l, "go: found "):
			continue
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	if len(lines) == 0 {
		return "", false
	}
	for _, l := range lines {
		if goPosition.MatchString(l) {
			return l, len(lines) > 1
		}
	}
	return lines[0], len(lines) > 1
}

func (e *GoBuildError) Unwrap() error { return e.Err }

// goBuild compiles t.Main for p into out and returns the path of the binary.
// The binary is static (CGO_ENABLED=0), built with -trimpath and -s -w, keeps
// its build info (module versions, VCS stamp when in a repository) and is
// reproducible: the same source, flags and toolchain give the same bytes.
func goBuild(ctx context.Context, gobin string, t Target, p v1.Platform, out string) error {
	penv, err := platformEnv(p)
	if err != nil {
		return err
	}
	ldflags := append([]string{"-s", "-w"}, t.Ldflags...)
	args := []string{"build",
		"-o", out,
		"-trimpath",
		// The machine's GOFLAGS may say -buildvcs=false; keep the VCS
		// stamp when the source is in a repository, and do not fail when
		// it is not.
		"-buildvcs=auto",
		"-ldflags=" + strings.Join(ldflags, " "),
	}
	args = append(args, t.Flags...)
	args = append(args, t.Main)
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = t.Dir
	// The go command's work directory goes next to out, so that a build
	// cancelled part-way (see compile) leaves nothing behind in $TMPDIR.
	cmd.Env = append(buildEnv(os.Environ(), penv, t.Env, t.SecretEnv), "GOTMPDIR="+filepath.Dir(out))
	// Its own process group, so that cancelling stops the compilers and
	// the linker it started too, not only the go command.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("running %s: %w", gobin, err)
		}
		return &GoBuildError{Target: t.Name, Platform: platformString(p), Output: output.String(), Err: err}
	}
	return nil
}

// SecretEnv lists the environment variables that hold slipway's own
// credentials: the cosign key password, registry credentials, identity
// tokens for keyless flows and the KMS credentials sign.key may use. They are
// never passed to `go build`, and templates cannot read them ({{.Env.X}}), so
// they cannot end up in a binary or an image. Target.SecretEnv adds more
// (the variable of sign.key: env://VAR).
var SecretEnv = []string{
	"COSIGN_PASSWORD",
	"SLIPWAY_REGISTRY_PASSWORD", "SLIPWAY_REGISTRY_TOKEN",
	"DOCKER_AUTH_CONFIG",
	"ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL", "SIGSTORE_ID_TOKEN",
	"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_CLIENT_SECRET", "VAULT_TOKEN",
}

// IsSecretEnv reports whether the variable name is in SecretEnv or extra.
func IsSecretEnv(name string, extra []string) bool {
	for _, l := range [][]string{SecretEnv, extra} {
		for _, s := range l {
			if s == name {
				return true
			}
		}
	}
	return false
}

// buildEnv is the environment of `go build`: the process environment, with
// the platform and CGO_ENABLED=0 forced and the target's own variables on top.
// Variables that would make the output depend on the machine are dropped,
// and so are secrets (SecretEnv and secret).
func buildEnv(base, platform, extra, secret []string) []string {
	drop := map[string]bool{
		"GOOS": true, "GOARCH": true, "GOARM": true, "GOAMD64": true, "GO386": true,
		"GOARM64": true, "CGO_ENABLED": true, "GOEXPERIMENT": true,
	}
	env := map[string]string{}
	for _, kv := range base {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || drop[k] || IsSecretEnv(k, secret) {
			continue
		}
		env[k] = v
	}
	for _, kv := range append(append([]string{"CGO_ENABLED=0"}, platform...), extra...) {
		k, v, _ := strings.Cut(kv, "=")
		if IsSecretEnv(k, secret) {
			continue
		}
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// findGo returns the go command to build with: $GOROOT/bin/go when GOROOT
// is set, else the one on PATH.
func findGo() (string, error) {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("finding the go command: %w", err)
	}
	return p, nil
}

func sortStrings(s []string) { sort.Strings(s) }
