package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/slipway-build/slipway/build"
)

// ResolvePaths makes the relative paths of c absolute: the inputs sign.key,
// sign.identity_token, sign.signing_config, sign.trusted_root,
// policy.keys, policy.trusted_root, base_policy.keys,
// base_policy.trusted_root, ca_certificates, cache_dir,
// scan.ignore_file, scan.vex, scan.db.dir and scan.cache_dir, and the outputs
// oci_layout (its default, dist/oci, too) and scan.reports outputs ("-" is
// stdout). A value equal to the
// one in file (the config as decoded from the file, before environment
// variables and flags) is relative to configDir, the directory of the
// config file; any other value came from SLIPWAY_* or a flag and is
// relative to workDir. "~/" is the home directory. Key references that are
// not paths (env://VAR, KMS URIs, inline PEM) are left alone.
//
// Without this a policy's `keys: [trusted.pub]` would be read from whatever
// directory slipway runs in: a checkout could plant its own trusted key.
//
// Target directories and oci: bases stay as written (they are recorded in
// images and provenance); Plan and ResolveLayoutBase resolve them against
// the config directory.
func (c *Config) ResolvePaths(file *Config, configDir, workDir string) {
	if file == nil {
		file = &Config{}
	}
	base := func(same bool) string {
		if same {
			return configDir
		}
		return workDir
	}
	one := func(p *string, fileV string, isPath func(string) bool) {
		if *p != "" && isPath(*p) {
			*p = ResolvePath(base(*p == fileV), *p)
		}
	}
	list := func(ps []string, fileV []string) {
		b := base(slices.Equal(ps, fileV))
		for i, p := range ps {
			ps[i] = ResolveKeyRef(b, p)
		}
	}
	anyPath := func(string) bool { return true }
	one(&c.Sign.Key, file.Sign.Key, IsKeyPath)
	list(c.Policy.Keys, file.Policy.Keys)
	if c.BasePolicy != nil {
		var fk []string
		if file.BasePolicy != nil {
			fk = file.BasePolicy.Keys
		}
		list(c.BasePolicy.Keys, fk)
	}
	one(&c.Sign.IdentityToken, file.Sign.IdentityToken, anyPath)
	one(&c.Sign.SigningConfig, file.Sign.SigningConfig, anyPath)
	one(&c.Sign.TrustedRoot, file.Sign.TrustedRoot, anyPath)
	one(&c.Policy.TrustedRoot, file.Policy.TrustedRoot, anyPath)
	if c.BasePolicy != nil {
		var ft string
		if file.BasePolicy != nil {
			ft = file.BasePolicy.TrustedRoot
		}
		one(&c.BasePolicy.TrustedRoot, ft, anyPath)
	}
	one(&c.CACertificates, file.CACertificates, func(s string) bool { return s != build.CASystem && s != build.CANone })
	one(&c.CacheDir, file.CacheDir, anyPath)
	one(&c.Scan.IgnoreFile, file.Scan.IgnoreFile, anyPath)
	list(c.Scan.VEX, file.Scan.VEX)
	one(&c.Scan.DB.Dir, file.Scan.DB.Dir, anyPath)
	one(&c.Scan.CacheDir, file.Scan.CacheDir, anyPath)
	layout := file.OCILayout
	if layout == "" {
		layout = DefaultOCILayout // the default is the file's too
	}
	one(&c.OCILayout, layout, anyPath)
	for i := range c.Scan.Reports {
		// Reports are only set in the file.
		one(&c.Scan.Reports[i].Output, c.Scan.Reports[i].Output, func(s string) bool { return s != "-" })
	}
}

// InputPaths returns a copy of the input path values of c (those
// ResolvePaths resolves), to pass to ResolvePaths as the file's values
// after environment variables and flags have been applied to c.
func (c *Config) InputPaths() *Config {
	out := &Config{CACertificates: c.CACertificates, CacheDir: c.CacheDir, OCILayout: c.OCILayout}
	out.Sign.Key = c.Sign.Key
	out.Sign.IdentityToken, out.Sign.SigningConfig, out.Sign.TrustedRoot = c.Sign.IdentityToken, c.Sign.SigningConfig, c.Sign.TrustedRoot
	out.Policy.Keys = splitKeys(c.Policy.Keys) // as Validate leaves them
	out.Policy.TrustedRoot = c.Policy.TrustedRoot
	if c.BasePolicy != nil {
		out.BasePolicy = &BasePolicy{Keys: slices.Clone(c.BasePolicy.Keys), TrustedRoot: c.BasePolicy.TrustedRoot}
	}
	out.Scan.IgnoreFile, out.Scan.DB.Dir, out.Scan.CacheDir = c.Scan.IgnoreFile, c.Scan.DB.Dir, c.Scan.CacheDir
	out.Scan.VEX = splitList(slices.Clone(c.Scan.VEX)) // as Validate leaves them
	return out
}

// IsKeyPath reports whether a key reference is a file path, not env://VAR,
// a KMS URI or an inline PEM key.
func IsKeyPath(ref string) bool {
	return ref != "" && !strings.Contains(ref, "://") && !IsInlinePEM(ref)
}

// IsInlinePEM reports whether a key reference is the PEM text itself.
func IsInlinePEM(ref string) bool {
	return strings.HasPrefix(strings.TrimSpace(ref), "-----BEGIN ")
}

// ResolveKeyRef resolves a key reference that is a path against dir (see
// ResolvePath) and returns other references unchanged.
func ResolveKeyRef(dir, ref string) string {
	if !IsKeyPath(ref) {
		return ref
	}
	return ResolvePath(dir, ref)
}

// ResolvePath expands a leading "~/" to the home directory and joins a
// relative path to dir.
func ResolvePath(dir, p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, rest)
		}
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// ResolveLayoutBase resolves the directory of an "oci:DIR[@digest]" base
// against dir; other references are returned unchanged.
func ResolveLayoutBase(dir, ref string) string {
	spec, ok := strings.CutPrefix(ref, build.LayoutPrefix)
	if !ok {
		return ref
	}
	return build.LayoutPrefix + ResolvePath(dir, spec)
}
