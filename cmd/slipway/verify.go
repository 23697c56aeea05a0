package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
	"github.com/slipway-build/slipway/sign/vocab"
	"github.com/spf13/cobra"
)

func newVerifyCmd(g *globalFlags) *cobra.Command {
	var keys []string
	var policyFile, output string
	var idf identityFlags
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: "Enforce the signing policy on an image; print the verified repo@sha256:…",
		Long: `Resolves IMAGE (a tag or digest) to a digest once, and verifies that digest
against the policy (the config's policy block, a --policy file of the same
shape, or just --key): valid signatures from threshold trusted keys, and
optionally required attestations, a vuln attestation with no finding at or
above max_severity, made within max_scan_age, and allowed base digests.
Prints the verified digest reference: deploy that, not the tag.

Signatures are read in both formats: Sigstore bundles stored as OCI 1.1
referrers (cosign v3's default) and cosign v2's sha256-<hex>.sig/.att tags.
Trusted signers are keys (--key, policy.keys) and keyless identities
(--certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp],
policy.identities; regexps must be anchored ^…$), checked against a Sigstore
trusted root (--trusted-root, policy.trusted_root; default for identities:
the public-good root, fetched over TUF). A certificate is checked at the
time a timestamp authority or transparency log of the trusted root vouches
for.

Key paths in a --policy file are relative to that file (in slipway.yaml, to
slipway.yaml), --key paths to the working directory; keys may also be
env://VAR or inline PEM. When the policy uses the vuln attestation,
max_scan_age defaults to 168h: the rollback window, how old a re-tagged
older attestation may be (0 turns it off). The scan time relied on is
reported on stderr (and as "scan" in --output json).
Exit 3 when the policy is not met, 1 when it could not be evaluated, 2 when
the policy is invalid.`,
		Example: `  slipway verify registry.example.com/team/hello:latest --key cosign.pub
  slipway verify IMAGE --policy policy.yaml --output json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := loadConfig(g, cmd.Flags(), nil)
			if err != nil {
				return err
			}
			// Key paths are relative to the file that names them (loadConfig
			// resolved the config's), --key paths to the working directory.
			pc := lc.Policy
			src := policySource{file: lc.File, prefix: "policy."}
			if policyFile != "" {
				p, err := loadPolicyFile(policyFile)
				if err != nil {
					return err
				}
				pc, src = *p, policySource{file: policyFile}
			}
			if len(keys) > 0 {
				pc.Keys = keys
				src.keysFlag = true
			}
			if err := idf.apply(&pc, &src); err != nil {
				return err
			}
			if len(pc.Keys) == 0 && len(pc.Identities) == 0 {
				return &usageError{errors.New("verify needs trusted keys or identities: --key, --certificate-identity, policy.keys, policy.identities or a --policy file")}
			}
			pol, err := signPolicy(pc, src)
			if err != nil {
				return err
			}
			ref, err := name.ParseReference(args[0])
			if err != nil {
				return &usageError{fmt.Errorf("parsing image reference %q: %w", args[0], err)}
			}
			ropts, err := readOptions(lc)
			if err != nil {
				return err
			}
			v, verr := sign.Verify(cmd.Context(), ref, pol, sign.WithRemoteOptions(ropts...), sign.WithLogger(g.logger()))
			if v != nil {
				if output == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					if err := enc.Encode(v); err != nil {
						return err
					}
				} else {
					if v.Scan != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), describeScan(v.Scan))
					}
					if v.Passed {
						fmt.Fprintln(cmd.OutOrStdout(), v.Image)
					}
				}
			}
			return verr
		},
	}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "trusted public key (file or env://VAR; repeatable); replaces policy.keys")
	cmd.Flags().StringVar(&policyFile, "policy", "", "policy file: the shape of slipway.yaml's policy block")
	idf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (the verified reference) or json (the verdict)")
	return cmd
}

// loadPolicyFile reads and checks a policy file; its key paths are
// resolved against the file's directory, never the working directory.
func loadPolicyFile(path string) (*pipeline.PolicyConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &pipeline.ConfigError{File: path, Msg: err.Error()}
	}
	p, err := pipeline.DecodePolicyFile(path, data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	for i, k := range p.Keys {
		p.Keys[i] = pipeline.ResolveKeyRef(dir, k)
	}
	if p.TrustedRoot != "" {
		p.TrustedRoot = pipeline.ResolvePath(dir, p.TrustedRoot)
	}
	return p, nil
}

// identityFlags are cosign's keyless verification flags.
type identityFlags struct {
	identity, identityRegexp, issuer, issuerRegexp, trustedRoot string
}

func (f *identityFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.identity, "certificate-identity", "", "trusted keyless identity: the certificate subject (email, workflow URI); replaces policy.identities")
	fl.StringVar(&f.identityRegexp, "certificate-identity-regexp", "", "trusted keyless identity as an anchored regexp (^…$)")
	fl.StringVar(&f.issuer, "certificate-oidc-issuer", "", "the OIDC issuer of the keyless identity")
	fl.StringVar(&f.issuerRegexp, "certificate-oidc-issuer-regexp", "", "the OIDC issuer as an anchored regexp (^…$)")
	fl.StringVar(&f.trustedRoot, "trusted-root", "", "Sigstore trusted_root.json (default for identities: the public-good root over TUF)")
}

// apply puts the flags into the policy: an identity given on the command
// line replaces the policy's identities.
func (f *identityFlags) apply(pc *pipeline.PolicyConfig, src *policySource) error {
	if f.trustedRoot != "" {
		pc.TrustedRoot = f.trustedRoot
		src.rootFlag = true
	}
	if f.identity == "" && f.identityRegexp == "" && f.issuer == "" && f.issuerRegexp == "" {
		return nil
	}
	id := pipeline.IdentityConfig{Issuer: f.issuer, Subject: f.identity, IssuerRegexp: f.issuerRegexp, SubjectRegexp: f.identityRegexp}
	if field, msg := vocab.CheckIdentity(id.Issuer, id.Subject, id.IssuerRegexp, id.SubjectRegexp); msg != "" {
		flag := map[string]string{"issuer": "--certificate-oidc-issuer", "subject": "--certificate-identity",
			"issuer_regexp": "--certificate-oidc-issuer-regexp", "subject_regexp": "--certificate-identity-regexp"}[field]
		return &usageError{fmt.Errorf("%s: %s", flag, msg)}
	}
	pc.Identities = []pipeline.IdentityConfig{id}
	src.idFlags = true
	return nil
}

// policySource says where a policy came from, for error messages.
type policySource struct {
	file     string // the policy file or slipway.yaml ("" for none)
	prefix   string // "policy." in slipway.yaml, "" in a policy file
	keysFlag bool   // keys came from --key
	idFlags  bool   // identities came from --certificate-*
	rootFlag bool   // the trusted root came from --trusted-root
}

// bad is a *pipeline.ConfigError about key (e.g. "keys[0]") of the policy,
// with its line when the file has it.
func (s policySource) bad(key string, msg string) error {
	ce := &pipeline.ConfigError{File: s.file, Key: "policy." + key, Msg: msg}
	if s.file != "" {
		if data, err := os.ReadFile(s.file); err == nil {
			ce.Line = pipeline.KeyLine(data, s.prefix+key)
		}
	}
	return ce
}

// signPolicy converts a validated policy config into sign.Policy, loading
// its keys. A key that cannot be loaded is a config error naming the
// policy file and the key (a usage error naming --key for a flag).
func signPolicy(pc pipeline.PolicyConfig, src policySource) (sign.Policy, error) {
	keys, err := loadPolicyKeys(pc, src)
	if err != nil {
		return sign.Policy{}, err
	}
	ids := map[string]bool{}
	for _, k := range keys {
		ids[k.ID()] = true
	}
	idents, err := signIdentities(pc.Identities)
	if err != nil {
		if src.idFlags {
			return sign.Policy{}, &usageError{err}
		}
		return sign.Policy{}, src.bad("identities", err.Error())
	}
	for _, id := range idents {
		ids[id.String()] = true
	}
	if pc.Threshold > len(ids) {
		return sign.Policy{}, src.bad("threshold", fmt.Sprintf("%d is more than the %d distinct trusted keys and identities given", pc.Threshold, len(ids)))
	}
	p := sign.Policy{Keys: keys, Identities: idents, Threshold: pc.Threshold, RequireAttestations: pc.RequireAttestations, MaxScanAge: pc.EffectiveMaxScanAge(),
		RequireTlog: pc.RequireTlog, RequireTimestamp: pc.RequireTimestamp, RequireNonRoot: pc.RequireNonRoot}
	if pc.TrustedRoot != "" || len(idents) > 0 || pc.RequireTlog || pc.RequireTimestamp {
		tr, err := trustedRoot(pc.TrustedRoot)
		if err != nil {
			if src.rootFlag {
				return p, &usageError{fmt.Errorf("--trusted-root: %w", err)}
			}
			if pc.TrustedRoot != "" {
				return p, src.bad("trusted_root", err.Error())
			}
			return p, err
		}
		p.TrustedRoot = tr
	}
	if pc.MaxSeverity != "" {
		sev, err := scan.ParseSeverity(pc.MaxSeverity)
		if err != nil {
			return p, src.bad("max_severity", err.Error())
		}
		p.MaxSeverity = sev
	}
	for i, d := range pc.AllowedBaseDigests {
		h, err := v1.NewHash(d)
		if err != nil {
			return p, src.bad(fmt.Sprintf("allowed_base_digests[%d]", i), err.Error())
		}
		p.AllowedBaseDigests = append(p.AllowedBaseDigests, h)
	}
	return p, nil
}

// loadPolicyKeys loads the policy's keys. A key that cannot be loaded is a
// config error naming the policy file and the key (a usage error naming
// --key for a flag).
func loadPolicyKeys(pc pipeline.PolicyConfig, src policySource) ([]*sign.PublicKey, error) {
	var keys []*sign.PublicKey
	for i, ref := range pc.Keys {
		k, err := sign.LoadPublicKeys(ref)
		if err != nil {
			if src.keysFlag {
				return nil, &usageError{fmt.Errorf("--key %s: %w", ref, err)}
			}
			hint := ""
			if pipeline.IsKeyPath(ref) {
				hint = " (a relative path is read from the directory of the file that names it)"
			}
			return nil, src.bad(fmt.Sprintf("keys[%d]", i), err.Error()+hint)
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

// signIdentities converts configured identities.
func signIdentities(ics []pipeline.IdentityConfig) ([]sign.Identity, error) {
	var out []sign.Identity
	for i, ic := range ics {
		id := sign.Identity{Issuer: ic.Issuer, Subject: ic.Subject, IssuerRegexp: ic.IssuerRegexp, SubjectRegexp: ic.SubjectRegexp}
		if err := id.Validate(); err != nil {
			return nil, fmt.Errorf("identities[%d]: %w", i, err)
		}
		out = append(out, id)
	}
	return out, nil
}

// trustedRoot loads a trusted_root.json, or with no path fetches the
// public-good root over TUF (only ever called when keyless identities,
// logs or timestamps are configured).
func trustedRoot(path string) (*root.TrustedRoot, error) {
	if path == "" {
		return sign.PublicGoodTrustedRoot()
	}
	return sign.LoadTrustedRoot(path)
}

// describeScan is the human line about the vuln scan a verdict relied on.
func describeScan(s *sign.VulnScan) string {
	window := "max_scan_age is off: an older signed attestation could be rolled back to"
	if s.MaxAge != "" {
		window = "max_scan_age " + s.MaxAge + " is the rollback window"
	}
	return fmt.Sprintf("vulnerability scan relied on: finished %s (%s ago; %s)", s.FinishedOn.Format(time.RFC3339), s.Age, window)
}
