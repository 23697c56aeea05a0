package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print slipway's version and the versions of its main libraries",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "slipway %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					switch d.Path {
					case "github.com/google/go-containerregistry", "github.com/aquasecurity/trivy", "github.com/sigstore/cosign/v2":
						fmt.Fprintf(cmd.OutOrStdout(), "  %s %s\n", d.Path, d.Version)
					}
				}
			}
			return nil
		},
	}
}
