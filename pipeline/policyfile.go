package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign/vocab"
	"go.yaml.in/yaml/v3"
)

// DefaultMaxScanAge is policy.max_scan_age when it is not set and the
// policy uses the vuln attestation: the rollback window, the oldest vuln
// attestation verify accepts.
const DefaultMaxScanAge = 168 * time.Hour

// ConfigDuration is a time.Duration in a config file: a Go duration ("168h",
// "90m") or a bare 0.
type ConfigDuration time.Duration

// String formats d like time.Duration.
func (d ConfigDuration) String() string { return time.Duration(d).String() }

// MarshalText writes d as it is written in the config ("30s"), e.g. in
// provenance.
func (d ConfigDuration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *ConfigDuration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" && n.Value == "0" {
		*d = 0
		return nil
	}
	var td time.Duration
	if err := n.Decode(&td); err != nil {
		return err
	}
	*d = ConfigDuration(td)
	return nil
}

// UnmarshalText implements encoding.TextUnmarshaler, for SLIPWAY_* values.
func (d *ConfigDuration) UnmarshalText(b []byte) error {
	td, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = ConfigDuration(td)
	return nil
}

// DecodePolicyFile parses and checks a policy file for `slipway verify
// --policy`: the shape of slipway.yaml's policy block, at the top level.
// An unknown key, a value of the wrong type or an invalid value (a
// threshold above the number of keys, an unknown attestation kind…) is a
// *ConfigError naming file, the line and the key (policy.KEY). Key paths
// are returned as written: the caller resolves them against the file's
// directory.
func DecodePolicyFile(file string, data []byte) (*PolicyConfig, error) {
	var p PolicyConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&p)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(file, data, err)
	}
	if err := p.Validate(file); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && ce.Line == 0 {
			ce.Line = KeyLine(data, strings.TrimPrefix(ce.Key, "policy."))
		}
		return nil, err
	}
	return &p, nil
}

// Validate checks the policy's values and normalises them (severity in
// upper case, comma-separated lists split). Errors are *ConfigError
// naming file and the key (policy.KEY).
func (p *PolicyConfig) Validate(file string) error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{File: file, Key: "policy." + key, Msg: fmt.Sprintf(format, args...)}
	}
	for i, k := range p.Keys {
		if strings.Trim(k, " \t\r\n,") == "" {
			return bad(fmt.Sprintf("keys[%d]", i), "empty key reference (want a file, env://VAR or an inline PEM public key)")
		}
	}
	p.Keys = splitKeys(p.Keys)
	if p.Threshold < 0 {
		return bad("threshold", "must be at least 1, got %d", p.Threshold)
	}
	if err := checkIdentities(p.Identities, func(key, msg string) error { return bad(key, "%s", msg) }); err != nil {
		return err
	}
	if n := len(p.Keys) + len(p.Identities); p.Threshold > 0 && n > 0 && p.Threshold > n {
		return bad("threshold", "%d is more than the %d keys and identities given", p.Threshold, n)
	}
	p.RequireAttestations = splitList(p.RequireAttestations)
	for i, a := range p.RequireAttestations {
		if !slices.Contains(vocab.Kinds(), a) {
			return bad(fmt.Sprintf("require_attestations[%d]", i), "want %s, got %q", oneOf(vocab.Kinds()), a)
		}
	}
	if p.MaxSeverity != "" {
		sev, err := scan.ParseSeverity(p.MaxSeverity)
		if err != nil {
			return bad("max_severity", "%v", err)
		}
		p.MaxSeverity = string(sev)
	}
	if p.MaxScanAge != nil && *p.MaxScanAge < 0 {
		return bad("max_scan_age", "must not be negative (0 turns the check off)")
	}
	p.AllowedBaseDigests = splitList(p.AllowedBaseDigests)
	for i, d := range p.AllowedBaseDigests {
		if _, err := v1.NewHash(d); err != nil {
			return bad(fmt.Sprintf("allowed_base_digests[%d]", i), "%q is not a digest (want sha256:<64 hex>)", d)
		}
	}
	return nil
}

// checkIdentities checks keyless identities; bad reports a key below
// identities[i].
func checkIdentities(ids []IdentityConfig, bad func(key, msg string) error) error {
	for i, id := range ids {
		if field, msg := vocab.CheckIdentity(id.Issuer, id.Subject, id.IssuerRegexp, id.SubjectRegexp); msg != "" {
			return bad(fmt.Sprintf("identities[%d].%s", i, field), msg)
		}
		for _, re := range []struct{ field, re string }{{"issuer_regexp", id.IssuerRegexp}, {"subject_regexp", id.SubjectRegexp}} {
			if _, err := regexp.Compile(re.re); err != nil {
				return bad(fmt.Sprintf("identities[%d].%s", i, re.field), err.Error())
			}
		}
	}
	return nil
}

// UsesVulnAttestation reports whether the policy looks at the vuln
// attestation (requires it, or limits its findings).
func (p *PolicyConfig) UsesVulnAttestation() bool {
	return slices.Contains(p.RequireAttestations, vocab.KindVuln) || p.MaxSeverity != ""
}

// EffectiveMaxScanAge is max_scan_age as verify applies it: the configured
// value (0: off), else DefaultMaxScanAge when the policy uses the vuln
// attestation, else 0.
func (p *PolicyConfig) EffectiveMaxScanAge() time.Duration {
	if p.MaxScanAge != nil {
		return time.Duration(*p.MaxScanAge)
	}
	if p.UsesVulnAttestation() {
		return DefaultMaxScanAge
	}
	return 0
}

// splitKeys is splitList for key references, leaving inline PEM keys (which
// hold no commas but span lines) whole.
func splitKeys(in []string) []string {
	var out []string
	for _, s := range in {
		if IsInlinePEM(s) {
			out = append(out, s)
			continue
		}
		out = append(out, splitList([]string{s})...)
	}
	return out
}
