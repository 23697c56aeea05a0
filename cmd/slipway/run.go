package main

import (
	"github.com/spf13/cobra"
)

func newRunCmd(g *globalFlags) *cobra.Command {
	f := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "run [TARGET...]",
		Short: "The whole pipeline: build → scan → sign → push, as slipway.yaml says",
		Long: `Builds every platform of every selected target, scans each index (unless
scan.enabled is false), signs it and attests it (when sign.key is set), and
only then writes: to the registry with --push, else to the OCI layout.
With on_failure: abort (default) nothing is written if any target fails;
with continue, the targets that passed are written. On the wire: blobs,
manifests, index, signatures and attestations, and tags last.`,
		Example: `  slipway run                 # everything into dist/oci
  slipway run --push          # to <repository>/<target>
  slipway run hello --push --output-json results.json
  # merge the shards of two runners (slipway build --platform P --oci-archive F)
  slipway run --push --from oci-archive:amd64.tar --from oci-archive:arm64.tar`,
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := loadConfig(g, cmd.Flags(), f.bindings())
			if err != nil {
				return err
			}
			// run's stages are the config's: scan unless scan.enabled is
			// false, sign when there is a key or keyless signing is on.
			scanOn := lc.Scan.Enabled == nil || *lc.Scan.Enabled
			return runBuild(cmd.Context(), g, f, lc, args, optional{scan: scanOn, sign: lc.Sign.Key != "" || lc.Sign.Keyless, summary: true})
		},
	}
	f.register(cmd)
	cmd.Flags().StringArrayVar(&f.from, "from", nil, "merge shards (oci:DIR or oci-archive:FILE, repeatable) written by slipway build on other runners instead of building: each target's index is assembled from their platform images, then scanned, signed and written as a build's")
	cmd.Flags().StringVar(&f.resolveDir, "resolve", "", "after a successful push, rewrite image references in the Kubernetes YAML under DIR (see slipway resolve)")
	return cmd
}
