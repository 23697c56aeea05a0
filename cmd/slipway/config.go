package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// envKeys are the config keys that SLIPWAY_<KEY> variables override (dots
// become underscores: SLIPWAY_SCAN_DB_DIR). Targets are only set in files.
var envKeys = []string{
	"repository", "platforms", "base", "ca_certificates", "oci_layout",
	"insecure_registries", "jobs", "on_failure", "source", "cache_dir", "cache_max_bytes",
	"scan.enabled", "scan.severity", "scan.ignore_unfixed", "scan.ignore_file", "scan.vex",
	"scan.db.dir", "scan.db.repositories", "scan.db.max_age", "scan.cache_dir",
	"scan.max_layer_bytes", "scan.max_image_bytes",
	"scan.server", "scan.server_token_env", "scan.server_token_header", "scan.server_timeout",
	"scan.cache", "scan.cache_ca", "scan.cache_cert", "scan.cache_key", "scan.cache_ttl",
	"sign.key", "sign.attestations", "sign.sbom_format", "sign.format", "sign.keyless",
	"sign.identity_token", "sign.fulcio_url", "sign.rekor_url", "sign.tsa_url",
	"sign.signing_config", "sign.trusted_root",
	"policy.keys", "policy.threshold", "policy.require_attestations",
	"policy.trusted_root", "policy.require_tlog", "policy.require_timestamp", "policy.require_non_root",
	"policy.max_severity", "policy.max_scan_age", "policy.allowed_base_digests",
}

// loadedConfig is a validated config and where it came from.
type loadedConfig struct {
	*pipeline.Config
	// File is the config file ("" for the built-in default).
	File string
	// Dir is where relative paths in the config start.
	Dir string
	// data is the file's text, to find the line of a key.
	data []byte
}

// loadConfig reads the config: the file (--config, $SLIPWAY_CONFIG,
// ./slipway.yaml, else a built-in default that builds the main package in
// the current directory), then SLIPWAY_* environment variables, then the
// flags bound to keys (flag name → config key). Precedence: flag > env >
// file > default.
func loadConfig(g *globalFlags, flags *pflag.FlagSet, bind map[string]string) (*loadedConfig, error) {
	file := g.config
	if file == "" {
		file = os.Getenv("SLIPWAY_CONFIG")
	}
	explicit := file != ""
	if !explicit {
		file = "slipway.yaml"
	}
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) && !explicit:
		file, data = "", defaultConfig()
	case errors.Is(err, os.ErrNotExist):
		return nil, &pipeline.ConfigError{File: file, Msg: "config file not found"}
	default:
		return nil, fmt.Errorf("reading config: %w", err)
	}
	shown := file
	if shown == "" {
		shown = "(built-in default config)"
	}
	// The file itself is decoded strictly: unknown keys and wrong types
	// fail with file and line, and user maps (env, labels, annotations)
	// keep their keys' case, which viper would fold.
	c, err := pipeline.DecodeStrict(shown, data)
	if err != nil {
		return nil, err
	}
	fileVals := c.InputPaths()
	// viper layers SLIPWAY_* variables and flags over the file's values.
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(string(data))); err != nil {
		return nil, &pipeline.ConfigError{File: shown, Msg: err.Error()}
	}
	v.SetEnvPrefix("SLIPWAY")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range envKeys {
		if err := v.BindEnv(k); err != nil {
			return nil, err
		}
	}
	for flag, key := range bind {
		if f := flags.Lookup(flag); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, err
			}
		}
	}
	overrides := map[string]any{}
	for _, k := range envKeys {
		if !v.IsSet(k) {
			continue
		}
		m := overrides
		parts := strings.Split(k, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v.Get(k)
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           c,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			mapstructure.TextUnmarshallerHookFunc(),
		),
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(overrides); err != nil {
		return nil, &pipeline.ConfigError{File: shown, Msg: "invalid value from SLIPWAY_* environment or flags: " + err.Error()}
	}
	if err := c.Validate(shown); err != nil {
		return nil, attribute(err, data, flags, bind)
	}
	dir := "."
	if file != "" {
		dir = filepath.Dir(file)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	// Paths in the file are relative to the file, not to where slipway runs.
	c.ResolvePaths(fileVals, abs, wd)
	return &loadedConfig{Config: c, File: file, Dir: abs, data: data}, nil
}

// defaultConfig builds the main package in the current directory, named
// after the directory, onto scratch, into the default OCI layout.
func defaultConfig() []byte {
	name := "app"
	if wd, err := os.Getwd(); err == nil {
		name = sanitizeName(filepath.Base(wd))
	}
	return []byte("targets:\n  - name: " + name + "\n    main: .\n")
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '-' || r == '_' || r == '.':
			if b.Len() > 0 {
				b.WriteRune(r)
			}
		}
	}
	out := strings.Trim(b.String(), "-_.")
	if out == "" {
		return "app"
	}
	return out
}

// attribute makes a validation error name where the bad value came from: the
// flag or SLIPWAY_* variable that set the key, else the file's line.
func attribute(err error, data []byte, flags *pflag.FlagSet, bind map[string]string) error {
	var ce *pipeline.ConfigError
	if !errors.As(err, &ce) || ce.Key == "" {
		return err
	}
	under := func(key string) bool {
		return ce.Key == key || strings.HasPrefix(ce.Key, key+".") || strings.HasPrefix(ce.Key, key+"[")
	}
	for flag, key := range bind {
		if f := flags.Lookup(flag); f != nil && f.Changed && under(key) {
			return &pipeline.ConfigError{Key: "--" + flag, Msg: ce.Msg}
		}
	}
	for _, key := range envKeys {
		env := "SLIPWAY_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		if _, set := os.LookupEnv(env); set && under(key) {
			return &pipeline.ConfigError{Key: env, Msg: ce.Msg}
		}
	}
	if ce.Line == 0 {
		ce.Line = pipeline.KeyLine(data, ce.Key)
	}
	return err
}
