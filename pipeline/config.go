package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the content of slipway.yaml. Field comments are the reference
// documentation of each key; configs/ has annotated examples.
type Config struct {
	// Repository is the registry repository images are pushed under, as
	// <repository>/<target name>. Empty: output goes to an OCI layout.
	Repository string `yaml:"repository" mapstructure:"repository"`
	// Platforms to build for every target (default: [linux/amd64]).
	Platforms []string `yaml:"platforms" mapstructure:"platforms"`
	// Base is the default base image: "scratch" (default), a reference (tag
	// or digest) or oci:DIR[@digest].
	Base string `yaml:"base" mapstructure:"base"`
	// BasePolicy, when set, requires the base image to be signed by one of
	// its keys.
	BasePolicy *BasePolicy `yaml:"base_policy" mapstructure:"base_policy"`
	// CACertificates is the CA bundle added to images on scratch: "system"
	// (default, the build machine's trust store), "none", or a PEM file.
	CACertificates string `yaml:"ca_certificates" mapstructure:"ca_certificates"`
	// OCILayout is the layout directory used when no repository is set
	// (default dist/oci).
	OCILayout string `yaml:"oci_layout" mapstructure:"oci_layout"`
	// InsecureRegistries are registry hosts (host[:port]) reached over plain
	// HTTP. Loopback registries need no entry.
	InsecureRegistries []string `yaml:"insecure_registries" mapstructure:"insecure_registries"`
	// Jobs bounds concurrent compilations and uploads (default: CPU count).
	Jobs int `yaml:"jobs" mapstructure:"jobs"`
	// Extensions are the top-level keys starting with "x-": allowed and
	// ignored, to hold YAML anchors (as docker-compose allows). Any other
	// unknown top-level key is an error.
	Extensions map[string]any `yaml:",inline" mapstructure:"-"`
	// OnFailure is "abort" (default: push nothing if any target fails a
	// gate) or "continue" (push the targets that passed).
	OnFailure string `yaml:"on_failure" mapstructure:"on_failure"`
	// CacheDir holds slipway's caches across runs: compiled binaries, scan
	// reports and SBOMs (default: the user cache dir, e.g.
	// ~/.cache/slipway). Relative to the config file.
	CacheDir string `yaml:"cache_dir" mapstructure:"cache_dir"`
	// CacheMaxBytes bounds slipway's caches (cache_dir, and the per-layer
	// scan cache) after every build or run, least recently used first.
	// 0 (default): 5 GiB.
	CacheMaxBytes int64 `yaml:"cache_max_bytes" mapstructure:"cache_max_bytes"`
	// Source is recorded as org.opencontainers.image.source (templated).
	Source string `yaml:"source" mapstructure:"source"`
	// Targets are the images to build.
	Targets []Target `yaml:"targets" mapstructure:"targets"`
	// Scan configures the vulnerability gate.
	Scan ScanConfig `yaml:"scan" mapstructure:"scan"`
	// Sign configures signing and attestations.
	Sign SignConfig `yaml:"sign" mapstructure:"sign"`
	// Policy is what `slipway verify` enforces.
	Policy PolicyConfig `yaml:"policy" mapstructure:"policy"`
}

// Target is one Go main package built into one multi-platform image.
type Target struct {
	// Name is the image name under the repository ([a-z0-9._-]).
	Name string `yaml:"name" mapstructure:"name" json:"name,omitempty"`
	// Dir is the Go module directory, relative to the config file (default ".").
	Dir string `yaml:"dir" mapstructure:"dir" json:"dir,omitempty"`
	// Main is the main package relative to Dir (default ".").
	Main string `yaml:"main" mapstructure:"main" json:"main,omitempty"`
	// Platforms overrides the top-level platforms.
	Platforms []string `yaml:"platforms" mapstructure:"platforms" json:"platforms,omitempty"`
	// Base overrides the top-level base.
	Base string `yaml:"base" mapstructure:"base" json:"base,omitempty"`
	// Ldflags are added after "-s -w" (templated).
	Ldflags []string `yaml:"ldflags" mapstructure:"ldflags" json:"ldflags,omitempty"`
	// Flags are extra go build flags, e.g. ["-tags=netgo"].
	Flags []string `yaml:"flags" mapstructure:"flags" json:"flags,omitempty"`
	// Env are extra environment variables for go build (KEY=VALUE).
	Env []string `yaml:"env" mapstructure:"env" json:"env,omitempty"`
	// Tags are the tags to push (templated; default [latest]).
	Tags []string `yaml:"tags" mapstructure:"tags" json:"tags,omitempty"`
	// Repository, when set, is this target's whole repository (as ko's
	// --bare), instead of <repository>/<name>.
	Repository string `yaml:"repository" mapstructure:"repository" json:"repository,omitempty"`
	// Image is the image's runtime config and metadata.
	Image ImageConfig `yaml:"image" mapstructure:"image" json:"image,omitempty"`
	// Files are copied into the image (beside ko's convention: a kodata
	// directory next to the main package goes to /var/run/ko, with
	// KO_DATA_PATH set).
	Files []FileConfig `yaml:"files" mapstructure:"files" json:"files,omitempty"`
}

// FileConfig is a file or directory copied into a target's image.
type FileConfig struct {
	// Src is a file or directory, relative to the config file.
	Src string `yaml:"src" mapstructure:"src" json:"src,omitempty"`
	// Dst is the absolute path it becomes in the image (a directory's
	// contents go under it).
	Dst string `yaml:"dst" mapstructure:"dst" json:"dst,omitempty"`
	// Mode is the octal permission of the files copied, e.g. "0640"
	// (default 0644, or 0755 for a file executable by its owner).
	Mode string `yaml:"mode" mapstructure:"mode" json:"mode,omitempty"`
}

// ImageConfig is the runtime config and metadata of a target's image.
type ImageConfig struct {
	// User is "uid[:gid]" (default 65532:65532).
	User string `yaml:"user" mapstructure:"user" json:"user,omitempty"`
	// Env is set in the image (templated values).
	Env map[string]string `yaml:"env" mapstructure:"env" json:"env,omitempty"`
	// Ports are exposed ports: 8080 or "8080/udp".
	Ports []string `yaml:"ports" mapstructure:"ports" json:"ports,omitempty"`
	// Labels are image config labels (templated values).
	Labels map[string]string `yaml:"labels" mapstructure:"labels" json:"labels,omitempty"`
	// Annotations are manifest and index annotations (templated values).
	Annotations map[string]string `yaml:"annotations" mapstructure:"annotations" json:"annotations,omitempty"`
	// Workdir is the working directory (default /).
	Workdir string `yaml:"workdir" mapstructure:"workdir" json:"workdir,omitempty"`
	// Args are the arguments passed to the binary.
	Args []string `yaml:"args" mapstructure:"args" json:"args,omitempty"`
	// Scratch chooses the runtime files added on the scratch base (each
	// default true).
	Scratch ScratchConfig `yaml:"scratch" mapstructure:"scratch" json:"scratch,omitempty"`
	// Healthcheck is the image config's Healthcheck.
	Healthcheck *HealthcheckConfig `yaml:"healthcheck" mapstructure:"healthcheck" json:"healthcheck,omitempty"`
}

// ScratchConfig chooses the runtime files of images on scratch.
type ScratchConfig struct {
	// Zoneinfo adds the Go toolchain's time zone database at
	// /usr/share/zoneinfo (default true).
	Zoneinfo *bool `yaml:"zoneinfo" mapstructure:"zoneinfo" json:"zoneinfo,omitempty"`
	// Passwd adds /etc/passwd and /etc/group naming root, nobody and
	// nonroot (65532), and /home/nonroot (default true).
	Passwd *bool `yaml:"passwd" mapstructure:"passwd" json:"passwd,omitempty"`
	// Tmp adds /tmp with mode 1777 (default true).
	Tmp *bool `yaml:"tmp" mapstructure:"tmp" json:"tmp,omitempty"`
}

// HealthcheckConfig is a container health check, as a Dockerfile's
// HEALTHCHECK (exec form only: scratch has no shell).
type HealthcheckConfig struct {
	// Test is the command and its arguments, e.g. ["/app/hello", "-health"]
	// (a leading "CMD" is allowed; ["NONE"] disables the base's check).
	Test []string `yaml:"test" mapstructure:"test" json:"test,omitempty"`
	// Interval between checks (default: the runtime's, 30s).
	Interval ConfigDuration `yaml:"interval" mapstructure:"interval" json:"interval,omitempty"`
	// Timeout of one check (default: the runtime's, 30s).
	Timeout ConfigDuration `yaml:"timeout" mapstructure:"timeout" json:"timeout,omitempty"`
	// StartPeriod is the grace period after start (default: the runtime's, 0s).
	StartPeriod ConfigDuration `yaml:"start_period" mapstructure:"start_period" json:"start_period,omitempty"`
	// Retries is how many consecutive failures make the container unhealthy
	// (default: the runtime's, 3).
	Retries int `yaml:"retries" mapstructure:"retries" json:"retries,omitempty"`
}

// ScanConfig configures the vulnerability scan and its gate.
type ScanConfig struct {
	// Enabled turns the scan on for `slipway run` (default true when a DB
	// is configured).
	Enabled *bool `yaml:"enabled" mapstructure:"enabled"`
	// Severity lists the severities that fail the gate (default HIGH, CRITICAL).
	Severity []string `yaml:"severity" mapstructure:"severity"`
	// IgnoreUnfixed skips findings without a fixed version in the gate.
	IgnoreUnfixed bool `yaml:"ignore_unfixed" mapstructure:"ignore_unfixed"`
	// IgnoreFile is a .trivyignore.yaml file, relative to the config file.
	IgnoreFile string `yaml:"ignore_file" mapstructure:"ignore_file"`
	// DB locates the vulnerability database.
	DB DBConfig `yaml:"db" mapstructure:"db"`
	// CacheDir keeps per-layer analysis results (default: user cache dir).
	CacheDir string `yaml:"cache_dir" mapstructure:"cache_dir"`
	// Cache, when set, keeps the per-layer analysis in Redis shared by
	// several runners instead of CacheDir: redis://[:password@]host:port[/db]
	// or rediss://… (TLS). Entries are used only for layers whose digest
	// slipway verified. Layer indexes stay in CacheDir.
	Cache string `yaml:"cache" mapstructure:"cache"`
	// CacheCA, CacheCert and CacheKey are PEM files for Redis over TLS
	// with a client certificate (all three or none; relative to the
	// config file), as Trivy's --redis-ca, --redis-cert, --redis-key.
	CacheCA   string `yaml:"cache_ca" mapstructure:"cache_ca"`
	CacheCert string `yaml:"cache_cert" mapstructure:"cache_cert"`
	CacheKey  string `yaml:"cache_key" mapstructure:"cache_key"`
	// CacheTTL is how long Redis keeps an entry (default 0: no expiry).
	CacheTTL time.Duration `yaml:"cache_ttl" mapstructure:"cache_ttl"`
	// Server, when set, scans through a Trivy server (`trivy server`,
	// Trivy's client/server protocol): slipway analyses the layers, the
	// server detects with its DB, whose version and age (scan.db.max_age)
	// are the server's. A server that is down, times out or answers
	// garbage fails the scan.
	Server string `yaml:"server" mapstructure:"server"`
	// ServerTokenEnv names the environment variable holding the server's
	// token (never written in the config, never shown).
	ServerTokenEnv string `yaml:"server_token_env" mapstructure:"server_token_env"`
	// ServerTokenHeader is the header carrying the token (default
	// Trivy-Token, as Trivy's --token-header).
	ServerTokenHeader string `yaml:"server_token_header" mapstructure:"server_token_header"`
	// ServerHeaders are sent with every request to the server (as Trivy's
	// --custom-headers).
	ServerHeaders map[string]string `yaml:"server_headers" mapstructure:"server_headers"`
	// ServerTimeout bounds each request to the server (default 2m).
	ServerTimeout time.Duration `yaml:"server_timeout" mapstructure:"server_timeout"`
	// MaxLayerBytes limits the decompressed bytes read from one layer
	// (default 2 GiB): a larger layer, such as a gzip bomb, fails the scan.
	MaxLayerBytes int64 `yaml:"max_layer_bytes" mapstructure:"max_layer_bytes"`
	// MaxImageBytes limits the decompressed bytes read from all layers of
	// one platform image (default 8 GiB).
	MaxImageBytes int64 `yaml:"max_image_bytes" mapstructure:"max_image_bytes"`
	// Reports are extra report files written on every scan.
	Reports []ReportConfig `yaml:"reports" mapstructure:"reports"`
	// VEX lists VEX documents (OpenVEX, CSAF, CycloneDX VEX), relative to
	// the config file, as Trivy's --vex: findings their not_affected or
	// fixed statements cover are suppressed in the gate and shown as
	// suppressed, with status and justification, in every report.
	VEX []string `yaml:"vex" mapstructure:"vex"`
	// AllowUnjudged lists what the gate lets through although the scanner
	// could not judge it (default: nothing): unknown-os, unsupported-os,
	// no-package-db, no-go-buildinfo, db-from-future (see scan.Unjudged*).
	AllowUnjudged []string `yaml:"allow_unjudged" mapstructure:"allow_unjudged"`
}

// DBConfig locates Trivy's vulnerability database.
type DBConfig struct {
	// Dir is a directory in Trivy's cache layout (db/trivy.db,
	// db/metadata.json).
	Dir string `yaml:"dir" mapstructure:"dir"`
	// Repositories are OCI repositories holding the DB artifact, tried in
	// order by `slipway db pull`.
	Repositories []string `yaml:"repositories" mapstructure:"repositories"`
	// MaxAge is the oldest DB accepted (default 168h).
	MaxAge time.Duration `yaml:"max_age" mapstructure:"max_age"`
}

// ReportConfig is one report file.
type ReportConfig struct {
	// Format is json, sarif, table, spdx-json or cyclonedx (an SBOM of the
	// scanned image).
	Format string `yaml:"format" mapstructure:"format"`
	// Output is the file path, relative to the working directory.
	Output string `yaml:"output" mapstructure:"output"`
}

// SignConfig configures signing and attestations.
type SignConfig struct {
	// Key is a cosign private key: a file path or env://VAR. Empty: no signing.
	Key string `yaml:"key" mapstructure:"key"`
	// Annotations are signed annotations in the payload (templated).
	Annotations map[string]string `yaml:"annotations" mapstructure:"annotations"`
	// Attestations to attach: sbom, vuln, provenance, openvex (the
	// OpenVEX documents of scan.vex, for Trivy's --vex oci).
	Attestations []string `yaml:"attestations" mapstructure:"attestations"`
	// SBOMFormat is spdx-json (default) or cyclonedx (vocab.SBOMFormats).
	SBOMFormat string `yaml:"sbom_format" mapstructure:"sbom_format"`
	// Format is where signatures go: both (default with a key: Sigstore
	// bundles as OCI 1.1 referrers and cosign v2 tags), bundle (the
	// default, and the only format, keyless) or legacy.
	Format string `yaml:"format" mapstructure:"format"`
	// Keyless signs with a short-lived Fulcio certificate for the OIDC
	// identity of the run (GitHub Actions, $SIGSTORE_ID_TOKEN or
	// IdentityToken) instead of a key.
	Keyless bool `yaml:"keyless" mapstructure:"keyless"`
	// IdentityToken is a file holding the OIDC identity token (keyless).
	IdentityToken string `yaml:"identity_token" mapstructure:"identity_token"`
	// FulcioURL is the certificate authority (keyless; default the
	// public-good instance, or the signing config's).
	FulcioURL string `yaml:"fulcio_url" mapstructure:"fulcio_url"`
	// RekorURL is the transparency log every bundle is entered in
	// (default keyless: the public-good Rekor, or the signing config's;
	// with a key: none). "none" turns the log off.
	RekorURL string `yaml:"rekor_url" mapstructure:"rekor_url"`
	// TSAURL is an RFC 3161 timestamp authority (the full URL, e.g.
	// https://tsa.example/api/v1/timestamp) that timestamps every bundle,
	// keyless or with a key. Default: none, or the signing config's.
	TSAURL string `yaml:"tsa_url" mapstructure:"tsa_url"`
	// SigningConfig is a Sigstore signing_config.json naming Fulcio, Rekor
	// and the TSA (what `cosign signing-config create` writes); the URL
	// keys above override it.
	SigningConfig string `yaml:"signing_config" mapstructure:"signing_config"`
	// TrustedRoot is the Sigstore trusted_root.json keyless bundles are
	// checked against right after signing. Default keyless: the
	// public-good root, fetched over TUF.
	TrustedRoot string `yaml:"trusted_root" mapstructure:"trusted_root"`
}

// RekorNone turns the transparency log off (sign.rekor_url).
const RekorNone = "none"

// IdentityConfig is a trusted keyless signer in a policy: the OIDC issuer
// and the certificate subject (email, workflow URI), each exact or as an
// anchored regexp.
type IdentityConfig struct {
	Issuer        string `yaml:"issuer" mapstructure:"issuer"`
	Subject       string `yaml:"subject" mapstructure:"subject"`
	IssuerRegexp  string `yaml:"issuer_regexp" mapstructure:"issuer_regexp"`
	SubjectRegexp string `yaml:"subject_regexp" mapstructure:"subject_regexp"`
}

// PolicyConfig is the policy `slipway verify` enforces.
type PolicyConfig struct {
	// Keys are trusted public keys (files or env://VAR).
	Keys []string `yaml:"keys" mapstructure:"keys"`
	// Identities are trusted keyless signers.
	Identities []IdentityConfig `yaml:"identities" mapstructure:"identities"`
	// TrustedRoot is the Sigstore trusted_root.json keyless signatures,
	// timestamps and log entries are checked against. Default with
	// identities: the public-good root, fetched over TUF.
	TrustedRoot string `yaml:"trusted_root" mapstructure:"trusted_root"`
	// RequireTlog requires a transparency-log entry on every counted
	// signature (bundles only; the trusted root names the log).
	RequireTlog bool `yaml:"require_tlog" mapstructure:"require_tlog"`
	// RequireTimestamp requires an RFC 3161 timestamp from a timestamp
	// authority of the trusted root on every counted signature.
	RequireTimestamp bool `yaml:"require_timestamp" mapstructure:"require_timestamp"`
	// Threshold is how many distinct keys and identities must have signed
	// (default 1).
	Threshold int `yaml:"threshold" mapstructure:"threshold"`
	// RequireAttestations lists attestation types that must be present.
	RequireAttestations []string `yaml:"require_attestations" mapstructure:"require_attestations"`
	// MaxSeverity denies images whose vuln attestation has a finding at or
	// above it.
	MaxSeverity string `yaml:"max_severity" mapstructure:"max_severity"`
	// MaxScanAge denies an image whose newest trusted vuln attestation
	// finished scanning longer ago than this. It bounds how old an
	// attestation someone with registry write access can roll back to (a
	// re-tagged older, cleaner .att cannot be detected without a
	// transparency log). Unset: DefaultMaxScanAge (168h) when the policy
	// uses the vuln attestation (require_attestations: [vuln] or
	// max_severity), else off. 0 turns it off.
	MaxScanAge *ConfigDuration `yaml:"max_scan_age" mapstructure:"max_scan_age"`
	// AllowedBaseDigests, when set, lists the only base digests accepted.
	AllowedBaseDigests []string `yaml:"allowed_base_digests" mapstructure:"allowed_base_digests"`
	// RequireNonRoot denies images whose config user, on any platform, is
	// empty, root, 0 or 0:… (they would run as root).
	RequireNonRoot bool `yaml:"require_non_root" mapstructure:"require_non_root"`
}

// BasePolicy requires a signed base image.
type BasePolicy struct {
	// Keys are the public keys a base signature may verify with.
	Keys []string `yaml:"keys" mapstructure:"keys"`
	// Identities are keyless signers a base signature may come from.
	Identities []IdentityConfig `yaml:"identities" mapstructure:"identities"`
	// TrustedRoot is the Sigstore trusted root for Identities (default:
	// the public-good root over TUF).
	TrustedRoot string `yaml:"trusted_root" mapstructure:"trusted_root"`
}

// ConfigError is an invalid configuration: a bad key or value, in a file.
// The CLI exits 2 on it.
type ConfigError struct {
	File string // the config file, when there is one
	Line int    // 1-based line, when known
	Key  string // the offending key, e.g. targets[0].main
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

var (
	yamlUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type pipeline\.(\w+)$`)
	yamlLine         = regexp.MustCompile(`^line (\d+): (.*)$`)
	sectionOfType    = map[string]string{
		"Config": "", "Target": "targets[]", "ImageConfig": "targets[].image",
		"ScanConfig": "scan", "DBConfig": "scan.db", "ReportConfig": "scan.reports[]",
		"SignConfig": "sign", "PolicyConfig": "policy", "BasePolicy": "base_policy",
		"FileConfig": "targets[].files[]", "ScratchConfig": "targets[].image.scratch",
		"HealthcheckConfig": "targets[].image.healthcheck",
	}
)

// DecodeStrict parses a slipway.yaml strictly: an unknown key or a value
// of the wrong type is a *ConfigError naming the key, the file and the line.
func DecodeStrict(file string, data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&c)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(file, data, err)
	}
	// The inline map takes every key no field names: only x-* may be there.
	var unknown *ConfigError
	for k := range c.Extensions {
		if strings.HasPrefix(k, "x-") {
			continue
		}
		ce := &ConfigError{File: file, Line: KeyLine(data, k), Key: k, Msg: "unknown key (top-level keys of your own start with x-)"}
		if unknown == nil || ce.Line < unknown.Line || (ce.Line == unknown.Line && ce.Key < unknown.Key) {
			unknown = ce
		}
	}
	if unknown != nil {
		return nil, unknown
	}
	c.Extensions = nil
	return &c, nil
}

// yamlError converts a strict YAML decoding error of data into a
// *ConfigError naming file, the line and, when it can, the key.
func yamlError(file string, data []byte, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if m := yamlUnknownField.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			key := m[2]
			if sec := sectionOfType[m[3]]; sec != "" {
				key = sec + "." + key
			}
			return &ConfigError{File: file, Line: line, Key: key, Msg: "unknown key"}
		}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &ConfigError{File: file, Line: line, Key: keyAtLine(data, line), Msg: "wrong type: " + m[2]}
		}
		return &ConfigError{File: file, Msg: msg}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ConfigError{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &ConfigError{File: file, Msg: "invalid YAML: " + msg}
}

// keyAtLine returns the mapping key written on line (1-based), if any.
func keyAtLine(data []byte, line int) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	l := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[line-1]), "- "))
	k, _, ok := strings.Cut(l, ":")
	if !ok {
		return ""
	}
	return strings.TrimSpace(k)
}
