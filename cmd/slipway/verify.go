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
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
	"github.com/spf13/cobra"
)

func newVerifyCmd(g *globalFlags) *cobra.Command {
	var keys []string
	var policyFile, output string
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: "Enforce the signing policy on an image; print the verified repo@sha256:…",
		Long: `Resolves IMAGE (a tag or digest) to a digest once, and verifies that digest
against the policy (the config's policy block, a --policy file of the same
shape, or just --key): valid signatures from threshold trusted keys, and
optionally required attestations, a vuln attestation with no finding at or
above max_severity, made within max_scan_age, and allowed base digests.
Prints the verified digest reference: deploy that, not the tag.

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
			if len(pc.Keys) == 0 {
				return &usageError{errors.New("verify needs trusted keys: --key, policy.keys or a --policy file")}
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
	return p, nil
}

// policySource says where a policy came from, for error messages.
type policySource struct {
	file     string // the policy file or slipway.yaml ("" for none)
	prefix   string // "policy." in slipway.yaml, "" in a policy file
	keysFlag bool   // keys came from --key
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
	var keys []*sign.PublicKey
	ids := map[string]bool{}
	for i, ref := range pc.Keys {
		k, err := sign.LoadPublicKeys(ref)
		if err != nil {
			if src.keysFlag {
				return sign.Policy{}, &usageError{fmt.Errorf("--key %s: %w", ref, err)}
			}
			hint := ""
			if pipeline.IsKeyPath(ref) {
				hint = " (a relative path is read from the directory of the file that names it)"
			}
			return sign.Policy{}, src.bad(fmt.Sprintf("keys[%d]", i), err.Error()+hint)
		}
		keys = append(keys, k...)
		for _, kk := range k {
			ids[kk.ID()] = true
		}
	}
	if pc.Threshold > len(ids) {
		return sign.Policy{}, src.bad("threshold", fmt.Sprintf("%d is more than the %d distinct trusted keys given", pc.Threshold, len(ids)))
	}
	p := sign.Policy{Keys: keys, Threshold: pc.Threshold, RequireAttestations: pc.RequireAttestations, MaxScanAge: pc.EffectiveMaxScanAge()}
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

// describeScan is the human line about the vuln scan a verdict relied on.
func describeScan(s *sign.VulnScan) string {
	window := "max_scan_age is off: an older signed attestation could be rolled back to"
	if s.MaxAge != "" {
		window = "max_scan_age " + s.MaxAge + " is the rollback window"
	}
	return fmt.Sprintf("vulnerability scan relied on: finished %s (%s ago; %s)", s.FinishedOn.Format(time.RFC3339), s.Age, window)
}
