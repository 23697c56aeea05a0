package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
	"github.com/slipway-build/slipway/sign/stage"
	"github.com/spf13/cobra"
)

func newPushCmd(g *globalFlags) *cobra.Command {
	var repository, imageRefs string
	var insecure []string
	cmd := &cobra.Command{
		Use:   "push oci:DIR [TARGET...]",
		Short: "Publish an OCI layout written by slipway to a registry, unchanged",
		Example: `  slipway build                      # writes dist/oci
  slipway push oci:dist/oci --repository registry.example.com/team`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || !strings.HasPrefix(args[0], build.LayoutPrefix) {
				return &usageError{fmt.Errorf("push needs oci:DIR as its first argument")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := loadConfig(g, cmd.Flags(), map[string]string{"repository": "repository"})
			if err != nil {
				return err
			}
			if lc.Repository == "" && !slices.ContainsFunc(lc.Targets, func(t pipeline.Target) bool { return t.Repository != "" }) {
				return &usageError{fmt.Errorf("push needs --repository (or repository in the config, or a target's repository)")}
			}
			dir := strings.TrimPrefix(args[0], build.LayoutPrefix)
			l, err := publish.NewLayout(dir)
			if err != nil {
				return err
			}
			reg, err := newRegistry(lc)
			if err != nil {
				return err
			}
			allowInsecure := insecureFunc(lc.Config, insecure)
			repoFor := func(target string) (name.Repository, error) {
				return lc.RepositoryFor(target, allowInsecure)
			}
			rec, err := lc.signatureRecord()
			if err != nil {
				return err
			}
			sigs := stage.LayoutSignatures(dir, rec)
			res, err := pipeline.PushLayout(cmd.Context(), l, reg, repoFor, sigs, args[1:])
			if werr := printRefs(res, imageRefs); werr != nil && err == nil {
				err = werr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&repository, "repository", "", "repository to push under, as <repository>/<target>")
	cmd.Flags().StringVar(&imageRefs, "image-refs", "", "also write the pushed references to this file")
	cmd.Flags().StringSliceVar(&insecure, "insecure-registry", nil, "registry host reached over plain HTTP")
	return cmd
}
