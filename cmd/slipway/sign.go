package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/scan/trivy"
	"github.com/slipway-build/slipway/sign"
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

// signerStage is the pipeline's signing stage: signatures over the index
// and every platform manifest, and the configured attestations.
type signerStage struct {
	keyed     *sign.Keyed
	lc        *loadedConfig
	attest    map[string]bool
	sboms     *trivy.Scanner
	ropts     []remote.Option
	goVersion func() string
}

// newSigner makes the signing stage from the sign config.
func newSigner(ctx context.Context, lc *loadedConfig, ropts []remote.Option, log *slog.Logger) (pipeline.Signer, error) {
	key, err := loadKey(ctx, lc)
	if err != nil {
		return nil, err
	}
	keyed, err := sign.NewKeyed(key, sign.WithLogger(log))
	if err != nil {
		return nil, err
	}
	s := &signerStage{keyed: keyed, lc: lc, attest: map[string]bool{}, ropts: ropts, goVersion: sync.OnceValue(goVersion)}
	for _, a := range lc.Sign.Attestations {
		s.attest[a] = true
	}
	if s.attest["sbom"] {
		if s.sboms, err = newScanner(lc, true, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// signingRepo is the repository named in signed payloads: the job's, or
// for layout output the configured repository, else slipway.local.
func signingRepo(lc *loadedConfig, j pipeline.Job) (name.Repository, error) {
	if j.Repository.RepositoryStr() != "" {
		return j.Repository, nil
	}
	prefix := lc.Repository
	if prefix == "" {
		prefix = "slipway.local"
	}
	return name.NewRepository(strings.TrimSuffix(prefix, "/") + "/" + j.Target.Name)
}

// Sign implements pipeline.Signer.
func (s *signerStage) Sign(ctx context.Context, j pipeline.Job, res *build.Result, report *scan.Report) (pipeline.Signatures, error) {
	repo, err := signingRepo(s.lc, j)
	if err != nil {
		return nil, err
	}
	opts := []sign.SignOption{sign.WithAnnotations(j.SignAnnotations)}
	if s.attest["vuln"] {
		if report == nil {
			return nil, errors.New("the vuln attestation needs a scan (enable the scan)")
		}
		opts = append(opts, sign.WithVulnReport(report))
	}
	if s.attest["sbom"] {
		doc, err := s.sbom(ctx, res)
		if err != nil {
			return nil, fmt.Errorf("making SBOM: %w", err)
		}
		f := sign.SPDXJSON
		if s.lc.Sign.SBOMFormat == trivy.FormatCycloneDX {
			f = sign.CycloneDXJSON
		}
		opts = append(opts, sign.WithSBOM(sign.SBOM{Format: f, Document: doc}))
	}
	if s.attest["provenance"] {
		opts = append(opts, sign.WithProvenance(s.provenance(j, res)))
	}
	sigs, err := s.keyed.Sign(ctx, res.Index, repo, opts...)
	if err != nil {
		return nil, err
	}
	return &signatures{sigs: sigs, ropts: s.ropts}, nil
}

// sbom makes the SBOM of res, or reads the one made for the same index
// digest, format and scanner before: SBOMs carry a creation time and a
// random namespace, and an unchanged image should keep its attestation.
func (s *signerStage) sbom(ctx context.Context, res *build.Result) ([]byte, error) {
	dir, err := s.lc.cacheDir("sbom")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, strings.ReplaceAll(res.Digest.String(), ":", "-")+"."+s.lc.Sign.SBOMFormat+"."+trivy.Version()+".json")
	if b, err := os.ReadFile(path); err == nil && json.Valid(b) {
		return b, nil
	}
	doc, err := s.sboms.SBOM(ctx, res.Index, s.lc.Sign.SBOMFormat)
	if err != nil {
		return nil, err
	}
	_ = writeFileAtomic(path, func(w io.Writer) error { _, err := w.Write(doc); return err })
	return doc, nil
}

// provenance describes how res was built, for the SLSA attestation.
func (s *signerStage) provenance(j pipeline.Job, res *build.Result) sign.Provenance {
	var cfgTarget pipeline.Target
	for _, t := range s.lc.Targets {
		if t.Name == j.Target.Name {
			cfgTarget = t
		}
	}
	// The build environment can carry credentials (GOPRIVATE tokens,
	// GOPROXY with a password): provenance records variable names only.
	env := make([]string, len(cfgTarget.Env))
	for i, kv := range cfgTarget.Env {
		k, _, _ := strings.Cut(kv, "=")
		env[i] = k
	}
	cfgTarget.Env = env
	platforms := make([]string, len(j.Target.Platforms))
	for i, p := range j.Target.Platforms {
		platforms[i] = build.PlatformString(p)
	}
	p := sign.Provenance{
		BuilderID: "https://github.com/slipway-build/slipway@" + version,
		BuildType: "https://github.com/slipway-build/slipway/build-types/go-image/v1",
		ExternalParameters: map[string]any{
			"target":    cfgTarget,
			"platforms": platforms,
			"base":      j.BaseRef,
			"tags":      j.Tags,
		},
		GoVersion: s.goVersion(),
		LDFlags:   strings.Join(append([]string{"-s", "-w"}, j.Target.Ldflags...), " "),
	}
	if j.Git.Commit != "" {
		uri := j.Git.Remote
		if uri != "" && !strings.HasPrefix(uri, "git+") {
			uri = "git+" + uri
		}
		p.Source = &sign.Source{URI: uri, Commit: j.Git.Commit, Dirty: j.Git.Dirty}
	}
	if res.Base.Digest != "" {
		if h, err := v1.NewHash(res.Base.Digest); err == nil {
			p.BaseImages = append(p.BaseImages, sign.BaseImage{Ref: j.BaseRef, Digest: h})
		}
		for _, pi := range res.Images {
			if h, err := v1.NewHash(pi.BaseDigest); err == nil {
				p.BaseImages = append(p.BaseImages, sign.BaseImage{Ref: j.BaseRef, Digest: h, Platform: build.PlatformString(pi.Platform)})
			}
		}
	}
	return p
}

// signatures adapts *sign.Signatures to pipeline.Signatures.
type signatures struct {
	sigs  *sign.Signatures
	ropts []remote.Option
}

func (s *signatures) Refs() []string {
	var refs []string
	repo := s.sigs.Repository()
	for _, sub := range s.sigs.Subjects() {
		tag := strings.Replace(sub.Digest.String(), ":", "-", 1)
		if len(sub.Signatures) > 0 {
			refs = append(refs, repo.Tag(tag+".sig").String())
		}
		if len(sub.Attestations) > 0 {
			refs = append(refs, repo.Tag(tag+".att").String())
		}
	}
	return refs
}

func (s *signatures) WriteRemote(ctx context.Context, repo name.Repository) error {
	return sign.WriteRemote(ctx, repo, s.sigs, s.ropts...)
}

func (s *signatures) WriteLayout(dir string) error { return sign.WriteLayout(dir, s.sigs) }

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
	return func(ctx context.Context, b *build.Base) error {
		if strings.HasPrefix(b.Name, build.LayoutPrefix) {
			return fmt.Errorf("base_policy: cannot verify signatures of a layout base (%s)", b.Name)
		}
		ref, err := name.ParseReference(b.Ref)
		if err != nil {
			return err
		}
		d := ref.Context().Digest(b.Digest.String())
		if _, err := sign.VerifyBase(ctx, d, keys, sign.WithRemoteOptions(ropts...), sign.WithLogger(log)); err != nil {
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
		Short: "Sign an image index already in a registry, by digest, with sign.key",
		Long: `Signs the index digest and each platform manifest digest (cosign's simple
signing payload, stored at the sha256-<digest>.sig tag). Only digests are
signed: a tag could move between reading and signing.`,
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
			key, err := loadKey(ctx, lc)
			if err != nil {
				return err
			}
			keyed, err := sign.NewKeyed(key, sign.WithLogger(log))
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
			if err := sign.WriteRemote(ctx, d.Context(), sigs, ropts...); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), d.String())
			return nil
		},
	}
	cmd.Flags().String("key", "", "private key: file or env://VAR (config: sign.key)")
	return cmd
}

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

// readLayoutSignatures reads the signatures stored in a layout for the
// index digest (nil when there are none).
func readLayoutSignatures(dir string, digest v1.Hash) (pipeline.Signatures, error) {
	sigs, err := sign.ReadLayoutFor(dir, digest)
	if err != nil || sigs == nil {
		return nil, err
	}
	return &signatures{sigs: sigs}, nil
}
