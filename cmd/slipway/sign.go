package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/scan/trivy"
	"github.com/slipway-build/slipway/sign"
	"github.com/slipway-build/slipway/sign/stage"
	"github.com/slipway-build/slipway/sign/vocab"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// passFunc reads a key password from COSIGN_PASSWORD (set, even empty),
// else prompts on the terminal. It never logs the password.
func passFunc(confirm bool) ([]byte, error) {
	if pw, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
		return []byte(pw), nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, errors.New("no key password: set COSIGN_PASSWORD")
	}
	fmt.Fprint(os.Stderr, "Enter password for private key: ")
	pw, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Enter password for private key again: ")
		again, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("reading password: %w", err)
		}
		if string(again) != string(pw) {
			return nil, errors.New("passwords do not match")
		}
	}
	return pw, nil
}

// loadKey loads sign.key, decrypting it now, so a wrong password fails
// before anything is built or pushed.
func loadKey(ctx context.Context, lc *loadedConfig) (*sign.PrivateKey, error) {
	if lc.Sign.Key == "" {
		return nil, &pipeline.ConfigError{File: lc.File, Key: "sign.key", Msg: "signing needs a key (set sign.key or SLIPWAY_SIGN_KEY)"}
	}
	ref := lc.Sign.Key
	if !strings.Contains(ref, "://") {
		ref = lc.path(ref)
	}
	k, err := sign.LoadPrivateKeyContext(ctx, ref, passFunc)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &pipeline.ConfigError{File: lc.File, Key: "sign.key", Msg: err.Error() + " (a relative path is read from the config file's directory)"}
	}
	if err != nil {
		return nil, fmt.Errorf("loading sign.key: %w", err)
	}
	return k, nil
}

// signerConfig reads the sign config: the key (decrypted now, so a wrong
// password fails before anything is built) or keyless signing, the format
// and the Sigstore services.
func signerConfig(ctx context.Context, lc *loadedConfig) (sign.SignerConfig, error) {
	sc := lc.Sign
	bad := func(key, msg string) error { return lc.configError(key, msg) }
	var cfg sign.SignerConfig
	if sc.Format != "" {
		f, err := sign.ParseFormat(sc.Format)
		if err != nil {
			return cfg, bad("sign.format", err.Error())
		}
		cfg.Format = f
	}
	svc := &sign.Services{FulcioURL: sc.FulcioURL, RekorURL: sc.RekorURL, TimestampURL: sc.TSAURL}
	if sc.SigningConfig != "" {
		c, err := sign.LoadSigningConfig(sc.SigningConfig, time.Now())
		if err != nil {
			return cfg, bad("sign.signing_config", err.Error())
		}
		if svc.FulcioURL == "" {
			svc.FulcioURL = c.FulcioURL
		}
		if svc.RekorURL == "" {
			svc.RekorURL = c.RekorURL
			if c.RekorURL == "" {
				svc.RekorURL = pipeline.RekorNone // the signing config names no log
			}
		}
		if svc.TimestampURL == "" {
			svc.TimestampURL = c.TimestampURL
		}
	}
	if sc.Keyless {
		if svc.FulcioURL == "" {
			svc.FulcioURL = sign.PublicFulcioURL
		}
		if svc.RekorURL == "" {
			svc.RekorURL = sign.PublicRekorURL // as cosign: keyless signatures are logged
		}
	}
	if svc.RekorURL == pipeline.RekorNone {
		svc.RekorURL = ""
	}
	if sc.Keyless || sc.TrustedRoot != "" {
		tr, err := trustedRoot(sc.TrustedRoot)
		if err != nil {
			if sc.TrustedRoot != "" {
				return cfg, bad("sign.trusted_root", err.Error())
			}
			return cfg, err
		}
		svc.TrustedRoot = tr
	}
	cfg.Services = svc
	if sc.Keyless {
		cfg.Keyless = &sign.Keyless{Token: sign.DefaultTokenSource(sc.IdentityToken, nil, nil)}
		return cfg, nil
	}
	key, err := loadKey(ctx, lc)
	if err != nil {
		return cfg, err
	}
	cfg.Key = key
	return cfg, nil
}

// deferSigner is newSigner, made beside the builds when nothing needs
// the terminal (the key's password is in COSIGN_PASSWORD, or there is no
// key file to decrypt): decrypting a cosign key (scrypt) costs about a
// third of a second of CPU. Its errors fail the run in the pipeline's
// preflight, before anything is written.
func deferSigner(ctx context.Context, lc *loadedConfig, ropts []remote.Option, log *slog.Logger) (pipeline.Signer, error) {
	_, havePassword := os.LookupEnv("COSIGN_PASSWORD")
	if !havePassword && !lc.Sign.Keyless && !strings.Contains(lc.Sign.Key, "://") {
		return newSigner(ctx, lc, ropts, log) // may prompt: now, not mid-build
	}
	return &deferredSigner{make: func() (pipeline.Signer, error) { return newSigner(ctx, lc, ropts, log) }}, nil
}

// deferredSigner makes its signer on Prepare (or the first Sign).
type deferredSigner struct {
	once sync.Once
	make func() (pipeline.Signer, error)
	s    pipeline.Signer
	err  error
}

var (
	_ pipeline.Signer   = (*deferredSigner)(nil)
	_ pipeline.Preparer = (*deferredSigner)(nil)
)

// Prepare implements pipeline.Preparer.
func (d *deferredSigner) Prepare(context.Context) error {
	d.once.Do(func() { d.s, d.err = d.make() })
	return d.err
}

// Sign implements pipeline.Signer.
func (d *deferredSigner) Sign(ctx context.Context, j pipeline.Job, res *build.Result, rep *scan.Report) (pipeline.Signatures, error) {
	if err := d.Prepare(ctx); err != nil {
		return nil, err
	}
	return d.s.Sign(ctx, j, res, rep)
}

// newSigner makes the signing stage from the sign config.
func newSigner(ctx context.Context, lc *loadedConfig, ropts []remote.Option, log *slog.Logger) (pipeline.Signer, error) {
	cfg, err := signerConfig(ctx, lc)
	if err != nil {
		return nil, err
	}
	opts := []stage.Option{
		stage.WithAttestations(lc.Sign.Attestations...),
		stage.WithRepository(lc.Repository),
		stage.WithTargets(lc.Targets),
		stage.WithBuilderVersion(version),
		stage.WithRemoteOptions(ropts...),
		stage.WithLogger(log),
		stage.WithSourceRoot(pipeline.SourceRoot(ctx, lc.Dir), lc.Dir),
	}
	rec, err := lc.signatureRecord()
	if err != nil {
		return nil, err
	}
	opts = append(opts, stage.WithRecord(rec))
	if slices.Contains(lc.Sign.Attestations, vocab.KindSBOM) {
		sboms, err := newScanner(lc, true, log)
		if err != nil {
			return nil, err
		}
		dir, err := lc.cacheDir("sbom")
		if err != nil {
			return nil, err
		}
		opts = append(opts, stage.WithSBOMs(sboms, lc.Sign.SBOMFormat), stage.WithSBOMCache(dir, trivy.SBOMMakerVersion()))
	}
	if slices.Contains(lc.Sign.Attestations, vocab.KindOpenVEX) {
		doc, err := openVEXDocument(lc)
		if err != nil {
			return nil, err
		}
		opts = append(opts, stage.WithOpenVEX(doc))
	}
	return stage.New(cfg, opts...)
}

// baseVerifier is the base_policy check: the resolved base digest must be
// signed by one of the keys.
func baseVerifier(lc *loadedConfig, ropts []remote.Option, log *slog.Logger) (pipeline.BaseVerifier, error) {
	if lc.BasePolicy == nil {
		return nil, nil
	}
	keys, err := sign.LoadPublicKeys(lc.paths(lc.BasePolicy.Keys)...)
	if err != nil {
		return nil, &pipeline.ConfigError{File: lc.File, Key: "base_policy.keys", Msg: err.Error()}
	}
	ids, err := signIdentities(lc.BasePolicy.Identities)
	if err != nil {
		return nil, lc.configError("base_policy.identities", err.Error())
	}
	pol := sign.Policy{Keys: keys, Identities: ids, Threshold: 1}
	if len(ids) > 0 || lc.BasePolicy.TrustedRoot != "" {
		if pol.TrustedRoot, err = trustedRoot(lc.BasePolicy.TrustedRoot); err != nil {
			if lc.BasePolicy.TrustedRoot != "" {
				return nil, lc.configError("base_policy.trusted_root", err.Error())
			}
			return nil, err
		}
	}
	return func(ctx context.Context, b *build.Base) error {
		if strings.HasPrefix(b.Name, build.LayoutPrefix) {
			return fmt.Errorf("base_policy: cannot verify signatures of a layout base (%s)", b.Name)
		}
		ref, err := name.ParseReference(b.Ref)
		if err != nil {
			return err
		}
		d := ref.Context().Digest(b.Digest.String())
		if _, err := sign.VerifyBase(ctx, d, pol, sign.WithRemoteOptions(ropts...), sign.WithLogger(log)); err != nil {
			return err
		}
		log.Info("base signature verified", "base", d.String())
		return nil
	}, nil
}

// paths resolves key references relative to the config file.
func (lc *loadedConfig) paths(refs []string) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = pipeline.ResolveKeyRef(lc.Dir, r)
	}
	return out
}

func newKeygenCmd(g *globalFlags) *cobra.Command {
	var prefix string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Generate a cosign-compatible key pair (PREFIX.key, PREFIX.pub)",
		Long: `Generates an ECDSA P-256 key pair: PREFIX.key is encrypted ("ENCRYPTED SIGSTORE
PRIVATE KEY", scrypt + secretbox) with the password from COSIGN_PASSWORD, or
asked on the terminal; PREFIX.pub is PEM. Both work with cosign unchanged.`,
		Example: `  COSIGN_PASSWORD=… slipway keygen --output-key-prefix keys/release`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			privPath, pubPath := prefix+".key", prefix+".pub"
			if !force {
				for _, p := range []string{privPath, pubPath} {
					if _, err := os.Stat(p); err == nil {
						return &usageError{fmt.Errorf("%s exists (use --force to overwrite)", p)}
					}
				}
			}
			pw, err := passFunc(true)
			if err != nil {
				return err
			}
			priv, pub, err := sign.GenerateKeyPair(pw)
			if err != nil {
				return err
			}
			if err := os.WriteFile(privPath, priv, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "private key written to %s, public key to %s\n", privPath, pubPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "write PREFIX.key and PREFIX.pub")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func newSignCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign REPO@sha256:DIGEST",
		Short: "Sign an image index already in a registry, by digest, with sign.key or keylessly",
		Long: `Signs the index digest and each platform manifest digest, as sign.format
says: a Sigstore bundle stored as an OCI 1.1 referrer of each digest (what
cosign v3 writes), cosign v2's simple-signing payload at the
sha256-<digest>.sig tag, or both (the default with a key; keyless signing
writes bundles). Only digests are signed: a tag could move between reading
and signing.`,
		Example: `  COSIGN_PASSWORD=… slipway sign registry.example.com/team/hello@sha256:… --key cosign.key`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := loadConfig(g, cmd.Flags(), map[string]string{"key": "sign.key"})
			if err != nil {
				return err
			}
			d, err := name.NewDigest(args[0])
			if err != nil {
				return &usageError{fmt.Errorf("sign needs REPO@sha256:DIGEST: %w", err)}
			}
			ctx := cmd.Context()
			log := g.logger()
			cfg, err := signerConfig(ctx, lc)
			if err != nil {
				return err
			}
			keyed, err := sign.NewSigner(cfg, sign.WithLogger(log))
			if err != nil {
				return err
			}
			ropts, err := readOptions(lc)
			if err != nil {
				return err
			}
			idx, err := remote.Index(d, append(ropts, remote.WithContext(ctx))...)
			if err != nil {
				return fmt.Errorf("reading %s: %w", d, err)
			}
			ann := map[string]string{}
			for k, v := range lc.Sign.Annotations {
				if !strings.Contains(v, "{{") {
					ann[k] = v
				}
			}
			sigs, err := keyed.Sign(ctx, idx, d.Context(), sign.WithAnnotations(ann))
			if err != nil {
				return err
			}
			rec, err := lc.signatureRecord()
			if err != nil {
				return err
			}
			if err := sign.WriteRemote(ctx, d.Context(), sigs, rec, nil, ropts...); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), d.String())
			return nil
		},
	}
	cmd.Flags().String("key", "", "private key: file or env://VAR (config: sign.key)")
	return cmd
}
