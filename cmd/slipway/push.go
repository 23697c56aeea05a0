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
		Use:   "push oci:DIR|oci-archive:FILE [TARGET...]",
		Short: "Publish an OCI layout (or archive) written by slipway to a registry, unchanged",
		Long: `Pushes every target (or the TARGETs named) of an OCI layout or layout
archive written by slipway build/run to <repository>/<target>, unchanged
(same digests): each index by digest, then its signatures and attestations,
then its tags. An oci-archive is checked before anything is pushed: every
blob must match its digest, and links, absolute paths, ".." and duplicate
entries are refused.`,
		Example: `  slipway build                      # writes dist/oci
  slipway push oci:dist/oci --repository registry.example.com/team

  slipway build --oci-archive images.tar
  slipway push oci-archive:images.tar --repository registry.example.com/team`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || (!strings.HasPrefix(args[0], build.LayoutPrefix) && !strings.HasPrefix(args[0], publish.ArchivePrefix)) {
				return &usageError{fmt.Errorf("push needs oci:DIR or oci-archive:FILE as its first argument")}
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
			if file, ok := strings.CutPrefix(args[0], publish.ArchivePrefix); ok {
				// Checked and unpacked before anything is pushed.
				tmp, cleanup, err := publish.OpenArchive(file)
				if err != nil {
					return err
				}
				defer cleanup()
				dir = tmp
			}
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
			if res != nil {
				// What was pushed, even if a later target failed.
				recordPushed(lc, res, g.logger())
			}
			return err
		},
	}
	cmd.Flags().StringVar(&repository, "repository", "", "repository to push under, as <repository>/<target>")
	cmd.Flags().StringVar(&imageRefs, "image-refs", "", "also write the pushed references to this file")
	cmd.Flags().StringSliceVar(&insecure, "insecure-registry", nil, "registry host reached over plain HTTP")
	return cmd
}

// openArchiveRef opens "oci-archive:FILE[@sha256:…]": FILE is checked and
// extracted (publish.OpenArchive) and the reference returned is
// "oci:DIR[@sha256:…]" of the extracted layout; subject maps a text naming
// that layout (a reference, an error) back to the archive's name, and done removes
// the layout. Any other reference is returned as it is, with no-op
// functions.
func openArchiveRef(ref string) (layoutRef string, subject func(string) string, done func(), err error) {
	spec, ok := strings.CutPrefix(ref, publish.ArchivePrefix)
	if !ok {
		return ref, func(s string) string { return s }, func() {}, nil
	}
	file, digest, _ := strings.Cut(spec, "@")
	if file == "" {
		return "", nil, nil, &usageError{fmt.Errorf("%s needs a file: oci-archive:FILE[@sha256:…]", ref)}
	}
	dir, cleanup, err := publish.OpenArchive(file)
	if err != nil {
		return "", nil, nil, err
	}
	layoutRef = build.LayoutPrefix + dir
	if digest != "" {
		layoutRef += "@" + digest
	}
	subject = func(s string) string {
		s = strings.ReplaceAll(s, build.LayoutPrefix+dir, publish.ArchivePrefix+file)
		return strings.ReplaceAll(s, dir, file)
	}
	return layoutRef, subject, cleanup, nil
}

// renamedError is an error whose message names the archive, not the
// directory it was unpacked into; it unwraps to the original.
type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }

// renameError rewrites err's message with subject (see openArchiveRef).
func renameError(err error, subject func(string) string) error {
	if err == nil {
		return nil
	}
	if msg := subject(err.Error()); msg != err.Error() {
		return &renamedError{msg: msg, err: err}
	}
	return err
}
