package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/sign"
	"github.com/slipway-build/slipway/sign/export"
	"github.com/slipway-build/slipway/sign/vocab"
	"github.com/spf13/cobra"
)

func newPolicyCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with the verification policy (the policy: block)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyExportCmd(g))
	return cmd
}

// exporters are the export targets.
var exporters = map[string]func(export.Policy, export.Options) (*export.Result, error){
	export.TargetClusterImagePolicy: export.ClusterImagePolicy,
	export.TargetKyverno:            export.Kyverno,
}

func newPolicyExportCmd(g *globalFlags) *cobra.Command {
	var format, policyFile, output string
	var images []string
	var allowWeaker bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the policy as a policy-controller ClusterImagePolicy or a Kyverno ClusterPolicy",
		Long: `Turns the policy slipway verify enforces (slipway.yaml's policy: block, or a
--policy file of the same shape, read by the same parser) into an admission
policy for the cluster, ready for kubectl apply: a sigstore policy-controller
ClusterImagePolicy (with a TrustRoot for a private Sigstore), or a Kyverno
ClusterPolicy (verifyImages, mutateDigest and verifyDigest on). Each rule maps
to what the target evaluates (see the table in the README). A rule the target
cannot express is an error naming the rule and the target, unless
--allow-weaker, which writes the policy without it and says on stderr what
was dropped. Images default to <repository>/**.`,
		Example: `  slipway policy export --format clusterimagepolicy -o cip.yaml
  slipway policy export --format kyverno --policy policy.yaml --images 'registry.example.com/team/**'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exp, ok := exporters[format]
			if !ok {
				return &usageError{fmt.Errorf("--format %q: want clusterimagepolicy or kyverno", format)}
			}
			lc, err := loadConfig(g, cmd.Flags(), nil)
			if err != nil {
				return err
			}
			pc, src := lc.Policy, policySource{file: lc.File, prefix: "policy."}
			if policyFile != "" {
				p, err := loadPolicyFile(policyFile)
				if err != nil {
					return err
				}
				pc, src = *p, policySource{file: policyFile}
			}
			if len(pc.Keys) == 0 && len(pc.Identities) == 0 {
				return &usageError{errors.New("the policy has no trusted keys or identities: set policy.keys or policy.identities, or give --policy FILE")}
			}
			if len(images) == 0 {
				if lc.Repository == "" {
					return &usageError{errors.New("which images does the policy apply to? set repository in slipway.yaml or give --images GLOB")}
				}
				prefix := strings.TrimSuffix(lc.Repository, "/") + "/"
				// A target with its own repository elsewhere would not be
				// covered by <repository>/**: the user names the images.
				for _, t := range lc.Targets {
					if t.Repository != "" && !strings.HasPrefix(t.Repository, prefix) {
						return &usageError{fmt.Errorf("target %s is pushed to %s, outside %s**: give --images GLOB for every image the policy must cover", t.Name, t.Repository, prefix)}
					}
				}
				images = []string{prefix + "**"}
			}
			p, err := exportPolicy(pc, src)
			if err != nil {
				return err
			}
			if err := formatReadable(format, lc, policyFile, len(p.Keys) > 0); err != nil {
				return err
			}
			res, err := exp(p, export.Options{Images: images, AllowWeaker: allowWeaker})
			var ue *export.UnsupportedError
			if errors.As(err, &ue) {
				return &usageError{err}
			}
			if err != nil {
				return err
			}
			for _, d := range res.Dropped {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: left out (--allow-weaker): %s\n", format, d)
			}
			if output == "" || output == "-" {
				_, err := cmd.OutOrStdout().Write(res.YAML)
				return err
			}
			if err := os.MkdirAll(filepath.Dir(output), 0o755); err != nil {
				return err
			}
			return atomicfile.WriteBytes(output, 0o644, res.YAML)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "clusterimagepolicy (sigstore policy-controller) or kyverno")
	cmd.Flags().StringVar(&policyFile, "policy", "", "policy file: the shape of slipway.yaml's policy block (default: slipway.yaml's)")
	cmd.Flags().StringArrayVar(&images, "images", nil, "image glob the policy applies to (repeatable; default <repository>/**)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	cmd.Flags().BoolVar(&allowWeaker, "allow-weaker", false, "leave out rules the target cannot express (listed on stderr) instead of failing")
	return cmd
}

// exportPolicy loads what the exporters need from a validated policy: the
// keys' PEM and the trusted root's JSON.
func exportPolicy(pc pipeline.PolicyConfig, src policySource) (export.Policy, error) {
	sp, err := loadPolicyKeys(pc, src)
	if err != nil {
		return export.Policy{}, err
	}
	p := export.Policy{Threshold: pc.Threshold, RequireAttestations: pc.RequireAttestations, MaxSeverity: pc.MaxSeverity,
		MaxScanAge: pc.EffectiveMaxScanAge(), AllowedBaseDigests: pc.AllowedBaseDigests, RequireNonRoot: pc.RequireNonRoot,
		RequireTlog: pc.RequireTlog, RequireTimestamp: pc.RequireTimestamp}
	for _, k := range sp {
		p.Keys = append(p.Keys, export.Key{PEM: string(k.PEM()), Ref: k.Ref()})
	}
	for _, id := range pc.Identities {
		p.Identities = append(p.Identities, export.Identity{Issuer: id.Issuer, Subject: id.Subject, IssuerRegexp: id.IssuerRegexp, SubjectRegexp: id.SubjectRegexp})
	}
	if pc.TrustedRoot != "" {
		if _, err := sign.LoadTrustedRoot(pc.TrustedRoot); err != nil {
			return p, src.bad("trusted_root", err.Error())
		}
		if p.TrustedRoot, err = os.ReadFile(pc.TrustedRoot); err != nil {
			return p, src.bad("trusted_root", err.Error())
		}
	}
	return p, nil
}

// formatReadable refuses an export whose engine cannot read the signatures
// slipway.yaml's sign.format writes with keys: policy-controller's key
// authorities read only cosign v2's legacy tags, Kyverno only Sigstore
// bundles. The policy would deny every image. (A --policy file does not
// say how images are signed: nothing to check.)
func formatReadable(target string, lc *loadedConfig, policyFile string, keys bool) error {
	if policyFile != "" || !keys || (lc.Sign.Key == "" && !lc.Sign.Keyless) {
		return nil
	}
	f := lc.Sign.Format
	if f == "" && lc.Sign.Keyless {
		f = vocab.FormatBundle
	}
	switch {
	case target == export.TargetClusterImagePolicy && f == vocab.FormatBundle:
		return lc.configError("sign.format", "policy-controller's key authorities read cosign v2's legacy signatures only: with sign.format bundle the exported policy would deny every image (use both)")
	case target == export.TargetKyverno && f == vocab.FormatLegacy:
		return lc.configError("sign.format", "Kyverno reads Sigstore bundles only: with sign.format legacy the exported policy would deny every image (use both)")
	}
	return nil
}
