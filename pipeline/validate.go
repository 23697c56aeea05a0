package pipeline

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
)

// Defaults applied by Validate.
const (
	DefaultOCILayout  = "dist/oci"
	DefaultPlatform   = "linux/amd64"
	OnFailureAbort    = "abort"
	OnFailureContinue = "continue"
)

var (
	targetName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
)

// Validate checks every value, fills defaults, and returns the first problem
// as a *ConfigError naming the key and file.
func (c *Config) Validate(file string) error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{File: file, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if c.Repository != "" {
		repo, err := name.NewRepository(c.Repository)
		if err == nil {
			err = checkRegistry(repo.Registry)
		}
		if err != nil {
			return bad("repository", "%v", err)
		}
	}
	if len(c.Platforms) == 0 {
		c.Platforms = []string{DefaultPlatform}
	}
	c.Platforms = splitList(c.Platforms)
	if err := checkPlatforms("platforms", c.Platforms); err != nil {
		return bad(err.Key, "%s", err.Msg)
	}
	if c.Base == "" {
		c.Base = build.Scratch
	}
	if err := checkBase(c.Base); err != nil {
		return bad("base", "%v", err)
	}
	if c.OCILayout == "" {
		c.OCILayout = DefaultOCILayout
	}
	if c.Jobs < 0 {
		return bad("jobs", "must be positive, got %d", c.Jobs)
	}
	switch c.OnFailure {
	case "":
		c.OnFailure = OnFailureAbort
	case OnFailureAbort, OnFailureContinue:
	default:
		return bad("on_failure", "must be abort or continue, got %q", c.OnFailure)
	}
	seen := map[string]bool{}
	for i := range c.Targets {
		t := &c.Targets[i]
		k := fmt.Sprintf("targets[%d]", i)
		if t.Name == "" {
			return bad(k+".name", "required")
		}
		if !targetName.MatchString(t.Name) {
			return bad(k+".name", "%q is not a valid image name component (lowercase letters, digits, . _ -)", t.Name)
		}
		if seen[t.Name] {
			return bad(k+".name", "duplicate target %q", t.Name)
		}
		seen[t.Name] = true
		if t.Repository != "" {
			if _, err := name.NewRepository(t.Repository); err != nil {
				return bad(k+".repository", "%v", err)
			}
		}
		if t.Dir == "" {
			t.Dir = "."
		}
		if t.Main == "" {
			t.Main = "."
		}
		t.Platforms = splitList(t.Platforms)
		if err := checkPlatforms(k+".platforms", t.Platforms); err != nil {
			return bad(err.Key, "%s", err.Msg)
		}
		if t.Base != "" {
			if err := checkBase(t.Base); err != nil {
				return bad(k+".base", "%v", err)
			}
		}
		if len(t.Tags) == 0 {
			t.Tags = []string{"latest"}
		}
		for j, e := range t.Env {
			if !strings.Contains(e, "=") {
				return bad(fmt.Sprintf("%s.env[%d]", k, j), "want KEY=VALUE, got %q", e)
			}
		}
		if key, msg := checkTargetBuild(t, secretEnv(c)); key != "" {
			return bad(k+"."+key, "%s", msg)
		}
		for j, p := range t.Image.Ports {
			if err := checkPort(p); err != nil {
				return bad(fmt.Sprintf("%s.image.ports[%d]", k, j), "%v", err)
			}
		}
		if t.Image.Workdir != "" && !strings.HasPrefix(t.Image.Workdir, "/") {
			return bad(k+".image.workdir", "must be absolute, got %q", t.Image.Workdir)
		}
		base := t.Base
		if base == "" {
			base = c.Base
		}
		if base == build.Scratch {
			plats, key := t.Platforms, k+".platforms"
			if len(plats) == 0 {
				plats, key = c.Platforms, "platforms"
			}
			if len(plats) == 1 && plats[0] == build.AllPlatforms {
				return bad(key, "%s means every linux platform of the base, and target %s is on scratch, which has none: list the platforms", build.AllPlatforms, t.Name)
			}
		}
		if key, msg := checkImageHabits(t, base); key != "" {
			return bad(k+"."+key, "%s", msg)
		}
	}
	if len(c.Scan.Severity) == 0 {
		for _, s := range scan.DefaultSeverities {
			c.Scan.Severity = append(c.Scan.Severity, string(s))
		}
	}
	c.Scan.Severity = splitList(c.Scan.Severity)
	for i, s := range c.Scan.Severity {
		sev, err := scan.ParseSeverity(s)
		if err != nil {
			return bad(fmt.Sprintf("scan.severity[%d]", i), "%v", err)
		}
		c.Scan.Severity[i] = string(sev)
	}
	if c.CacheMaxBytes < 0 {
		return bad("cache_max_bytes", "must not be negative (0: the default, 5 GiB)")
	}
	if c.Scan.MaxLayerBytes < 0 {
		return bad("scan.max_layer_bytes", "must not be negative")
	}
	if c.Scan.MaxImageBytes < 0 {
		return bad("scan.max_image_bytes", "must not be negative")
	}
	if c.Scan.DB.MaxAge < 0 {
		return bad("scan.db.max_age", "must not be negative")
	}
	if c.Scan.DB.MaxAge == 0 {
		c.Scan.DB.MaxAge = scan.DefaultDBMaxAge
	}
	for i, r := range c.Scan.DB.Repositories {
		ref, err := name.ParseReference(r)
		if err == nil {
			err = checkRegistry(ref.Context().Registry)
		}
		if err != nil {
			return bad(fmt.Sprintf("scan.db.repositories[%d]", i), "%v", err)
		}
	}
	for i, r := range c.Scan.Reports {
		if f, err := scan.ParseFormat(r.Format); err != nil || string(f) != r.Format {
			return bad(fmt.Sprintf("scan.reports[%d].format", i), "want json, sarif, table, spdx-json or cyclonedx, got %q", r.Format)
		}
		if r.Output == "" {
			return bad(fmt.Sprintf("scan.reports[%d].output", i), "required")
		}
	}
	if key, msg := checkScanRemote(&c.Scan); key != "" {
		return bad(key, "%s", msg)
	}
	c.Scan.AllowUnjudged = splitList(c.Scan.AllowUnjudged)
	for i, a := range c.Scan.AllowUnjudged {
		if !slices.Contains(scan.UnjudgedReasons, a) {
			return bad(fmt.Sprintf("scan.allow_unjudged[%d]", i), "unknown entry %q (want %s)", a, strings.Join(scan.UnjudgedReasons, ", "))
		}
	}
	c.Scan.VEX = splitList(c.Scan.VEX)
	c.Sign.Attestations = splitList(c.Sign.Attestations)
	for i, a := range c.Sign.Attestations {
		if !slices.Contains(vocab.AttestationKinds(), a) {
			return bad(fmt.Sprintf("sign.attestations[%d]", i), "want %s, got %q", oneOf(vocab.AttestationKinds()), a)
		}
	}
	if slices.Contains(c.Sign.Attestations, vocab.KindOpenVEX) && len(c.Scan.VEX) == 0 {
		return bad("sign.attestations", "the openvex attestation attaches the OpenVEX documents of scan.vex, and it lists none")
	}
	if len(c.Sign.Attestations) > 0 && c.Sign.Key == "" && !c.Sign.Keyless {
		return bad("sign.attestations", "attestations are signed: set sign.key or sign.keyless")
	}
	if c.Sign.Key != "" && c.Sign.Keyless {
		return bad("sign.keyless", "sign.key and sign.keyless are exclusive: sign with a key or keylessly")
	}
	if c.Sign.Format != "" && !slices.Contains(vocab.Formats(), c.Sign.Format) {
		return bad("sign.format", "want %s, got %q", oneOf(vocab.Formats()), c.Sign.Format)
	}
	if c.Sign.Keyless && c.Sign.Format != "" && c.Sign.Format != vocab.FormatBundle {
		return bad("sign.format", "keyless signing writes Sigstore bundles only (format %q needs a key: cosign v2's keyless format depends on Rekor bundle annotations)", c.Sign.Format)
	}
	for _, u := range []struct{ key, v string }{{"sign.fulcio_url", c.Sign.FulcioURL}, {"sign.rekor_url", c.Sign.RekorURL}, {"sign.tsa_url", c.Sign.TSAURL}} {
		if u.v == "" || u.v == RekorNone && u.key == "sign.rekor_url" {
			continue
		}
		if pu, err := url.Parse(u.v); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			return bad(u.key, "want an http(s) URL, got %q", u.v)
		}
	}
	if c.Sign.SBOMFormat == "" {
		c.Sign.SBOMFormat = vocab.SBOMFormats()[0]
	}
	if !slices.Contains(vocab.SBOMFormats(), c.Sign.SBOMFormat) {
		return bad("sign.sbom_format", "want %s, got %q", oneOf(vocab.SBOMFormats()), c.Sign.SBOMFormat)
	}
	if err := c.Policy.Validate(file); err != nil {
		return err
	}
	if c.BasePolicy != nil {
		if len(c.BasePolicy.Keys) == 0 && len(c.BasePolicy.Identities) == 0 {
			return bad("base_policy.keys", "at least one key or identity is required")
		}
		if err := checkIdentities(c.BasePolicy.Identities, func(key, msg string) error { return bad("base_policy."+key, "%s", msg) }); err != nil {
			return err
		}
	}
	return nil
}

// checkImageHabits checks a target's files, image.scratch and
// image.healthcheck, and returns the key (below the target) and the
// problem of the first bad one.
func checkImageHabits(t *Target, base string) (key, msg string) {
	for j, f := range t.Files {
		k := fmt.Sprintf("files[%d]", j)
		if f.Src == "" {
			return k + ".src", "required"
		}
		if f.Dst == "" {
			return k + ".dst", "required"
		}
		if !path.IsAbs(f.Dst) || path.Clean(f.Dst) == "/" {
			return k + ".dst", fmt.Sprintf("must be an absolute path below /, got %q", f.Dst)
		}
		if path.Clean(f.Dst) == path.Join(build.AppDir, t.Name) {
			return k + ".dst", fmt.Sprintf("%s is the binary", f.Dst)
		}
		if _, err := FileMode(f.Mode); err != nil {
			return k + ".mode", err.Error()
		}
	}
	s := t.Image.Scratch
	for _, o := range []struct {
		key string
		v   *bool
	}{{"zoneinfo", s.Zoneinfo}, {"passwd", s.Passwd}, {"tmp", s.Tmp}} {
		if o.v != nil && *o.v && base != build.Scratch {
			return "image.scratch." + o.key, fmt.Sprintf("applies to the scratch base only (base is %q)", base)
		}
	}
	hc := t.Image.Healthcheck
	if hc == nil {
		return "", ""
	}
	switch {
	case len(hc.Test) == 0:
		return "image.healthcheck.test", "required: the command and its arguments"
	case hc.Test[0] == "CMD-SHELL":
		return "image.healthcheck.test", "exec form only (there is no shell on scratch): give the command and its arguments"
	case hc.Test[0] == "NONE" && len(hc.Test) > 1:
		return "image.healthcheck.test", "NONE takes no arguments"
	case hc.Test[0] == "CMD" && len(hc.Test) == 1:
		return "image.healthcheck.test", "CMD needs a command"
	}
	for _, d := range []struct {
		key string
		v   ConfigDuration
	}{{"interval", hc.Interval}, {"timeout", hc.Timeout}, {"start_period", hc.StartPeriod}} {
		if d.v < 0 || d.v > 0 && time.Duration(d.v) < time.Millisecond {
			return "image.healthcheck." + d.key, fmt.Sprintf("must be 0 (the runtime's default) or at least 1ms, got %s", d.v)
		}
	}
	if hc.Retries < 0 {
		return "image.healthcheck.retries", fmt.Sprintf("must not be negative, got %d", hc.Retries)
	}
	return "", ""
}

// FileMode parses a files[].mode: octal permission bits ("0640", "755");
// "" is 0 (the default).
func FileMode(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || m == 0 || m > 0o7777 {
		return 0, fmt.Errorf("want octal permission bits such as \"0644\", got %q", s)
	}
	return int64(m), nil
}

func checkBase(s string) error {
	if s == build.Scratch || strings.HasPrefix(s, build.LayoutPrefix) {
		if strings.HasPrefix(s, build.LayoutPrefix) && strings.TrimPrefix(s, build.LayoutPrefix) == "" {
			return fmt.Errorf("oci: needs a directory")
		}
		return nil
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return err
	}
	return checkRegistry(ref.Context().Registry)
}

// checkRegistry fails for a registry name that go-containerregistry parses
// but that is not a URL host ("::"): without it such a reference passes
// validation and fails only when a request is built.
func checkRegistry(reg name.Registry) error {
	if _, err := url.Parse("https://" + reg.RegistryStr() + "/v2/"); err != nil {
		return fmt.Errorf("registry %q is not a valid host[:port]", reg.RegistryStr())
	}
	return nil
}

func checkPort(p string) error {
	num, proto, hasProto := strings.Cut(p, "/")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q is not a port number", p)
	}
	if hasProto && proto != "tcp" && proto != "udp" && proto != "sctp" {
		return fmt.Errorf("%q: protocol must be tcp, udp or sctp", p)
	}
	return nil
}

// splitList flattens comma-separated entries, so that an environment
// variable "a,b" and a YAML list mean the same.
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// oneOf lists words as "a, b or c".
func oneOf(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// checkPlatforms checks a platforms list: os/arch[/variant] entries, or
// "all" alone (every linux platform of the base).
func checkPlatforms(key string, ps []string) *ConfigError {
	for i, p := range ps {
		if p == build.AllPlatforms {
			if len(ps) > 1 {
				return &ConfigError{Key: fmt.Sprintf("%s[%d]", key, i), Msg: fmt.Sprintf("%q stands alone: it means every linux platform of the base", build.AllPlatforms)}
			}
			continue
		}
		if _, err := build.ParsePlatform(p); err != nil {
			return &ConfigError{Key: fmt.Sprintf("%s[%d]", key, i), Msg: err.Error()}
		}
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkScanRemote checks scan.server and its options, and scan.cache
// (Redis) and its TLS options. Values are never quoted back when they may
// hold a secret (a Redis password in the URL).
func checkScanRemote(s *ScanConfig) (key, msg string) {
	if s.Server != "" {
		u, err := url.Parse(s.Server)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return "scan.server", "want http(s)://host[:port][/prefix]"
		case u.User != nil || u.RawQuery != "":
			return "scan.server", "credentials do not belong in the URL (no user, password or query): put the token in the variable scan.server_token_env names"
		}
	}
	if s.Server == "" && (s.ServerTokenEnv != "" || s.ServerTokenHeader != "" || len(s.ServerHeaders) > 0 || s.ServerTimeout != 0) {
		return "scan.server", "required by scan.server_token_env, scan.server_token_header, scan.server_headers and scan.server_timeout"
	}
	if s.ServerTokenEnv != "" && !envName.MatchString(s.ServerTokenEnv) {
		// Not quoted: it may be the token itself, pasted in by mistake.
		return "scan.server_token_env", "not an environment variable name (name the variable that holds the token, do not write the token here)"
	}
	if s.ServerTokenHeader != "" && !httpToken.MatchString(s.ServerTokenHeader) {
		return "scan.server_token_header", fmt.Sprintf("%q is not a header name", s.ServerTokenHeader)
	}
	for k := range s.ServerHeaders {
		if !httpToken.MatchString(k) {
			return "scan.server_headers", fmt.Sprintf("%q is not a header name", k)
		}
	}
	if s.ServerTimeout < 0 {
		return "scan.server_timeout", "must not be negative"
	}
	if s.Cache != "" {
		u, err := url.Parse(s.Cache)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return "scan.cache", "want redis://[:password@]host:port[/db] or rediss://… (the value is not shown: it may hold a password)"
		}
	}
	n := 0
	for _, f := range []string{s.CacheCA, s.CacheCert, s.CacheKey} {
		if f != "" {
			n++
		}
	}
	if n > 0 && s.Cache == "" {
		return "scan.cache", "required by scan.cache_ca, scan.cache_cert and scan.cache_key"
	}
	if n != 0 && n != 3 {
		return "scan.cache_ca", "Redis TLS needs scan.cache_ca, scan.cache_cert and scan.cache_key together"
	}
	if s.CacheTTL < 0 {
		return "scan.cache_ttl", "must not be negative"
	}
	if s.CacheTTL != 0 && s.Cache == "" {
		return "scan.cache", "required by scan.cache_ttl"
	}
	return "", ""
}

// httpToken is an HTTP header field name (RFC 9110 token).
var httpToken = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
