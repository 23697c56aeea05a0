package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/scan/trivy"
	"github.com/slipway-build/slipway/sign"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// scanFlags are the flags of scan, and the scan flags of build and run.
type scanFlags struct {
	allowStale bool
	format     string
	output     string
}

func registerScanConfigFlags(fl *pflag.FlagSet) {
	fl.StringSlice("severity", nil, "severities that fail the gate (config: scan.severity, default HIGH,CRITICAL)")
	fl.Bool("ignore-unfixed", false, "leave findings without a fix out of the gate (config: scan.ignore_unfixed)")
	fl.String("ignore-file", "", "Trivy .trivyignore.yaml file (config: scan.ignore_file)")
	fl.StringSlice("vex", nil, "VEX documents (OpenVEX, CSAF, CycloneDX VEX) whose not_affected/fixed statements suppress findings, as trivy --vex (config: scan.vex)")
	fl.String("db-dir", "", "vulnerability DB dir in Trivy's cache layout (config: scan.db.dir)")
	fl.String("scan-cache-dir", "", "per-layer scan cache (config: scan.cache_dir)")
	fl.String("cache-dir", "", "slipway's cache: binaries, reports, SBOMs, signature record, base content (config: cache_dir)")
}

// scanBindings maps scan flags to config keys.
var scanBindings = map[string]string{
	"severity": "scan.severity", "ignore-unfixed": "scan.ignore_unfixed", "ignore-file": "scan.ignore_file", "vex": "scan.vex",
	"db-dir": "scan.db.dir", "scan-cache-dir": "scan.cache_dir", "cache-dir": "cache_dir",
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func newScanCmd(g *globalFlags) *cobra.Command {
	f := &scanFlags{}
	cmd := &cobra.Command{
		Use:   "scan IMAGE",
		Short: "Scan an image (every platform) for vulnerabilities and apply the gate",
		Long: `Scans every platform of IMAGE with Trivy, as a library, without a Docker
daemon. IMAGE is a registry reference (tag or digest), oci:DIR[@sha256:…]
or oci-archive:FILE[@sha256:…].
The report lists every finding of every severity; only the gate (severity,
ignore_unfixed, ignore file, VEX) decides the exit code: 3 when it fails, 1 when
part of the image cannot be judged ("cannot judge: …") and
scan.allow_unjudged does not allow it. --format spdx-json or cyclonedx
writes an SBOM of the image instead of a findings report (no signing needed).`,
		Example: `  slipway scan oci:dist/oci@sha256:…
  slipway scan registry.example.com/team/hello:latest --format sarif --output hello.sarif
  slipway scan IMAGE --severity CRITICAL --ignore-file .trivyignore.yaml
  slipway scan IMAGE --format spdx-json --output sbom.spdx.json
  slipway scan IMAGE --vex vex.openvex.json --format json --output report.json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := loadConfig(g, cmd.Flags(), scanBindings)
			if err != nil {
				return err
			}
			// A report format is checked before anything is scanned.
			if f.format != "" {
				if _, err := scan.ParseFormat(f.format); err != nil {
					return &usageError{fmt.Errorf("--format: %w", err)}
				}
			}
			log := g.logger()
			s, err := newScanner(lc, f.allowStale, log)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ref, named, done, err := openArchiveRef(args[0]) // oci-archive:FILE, checked and extracted
			if err != nil {
				return err
			}
			defer done()
			subject, idx, img, err := loadImage(ctx, lc, ref)
			if err != nil {
				return renameError(err, named)
			}
			subject = named(subject)
			log.Info("scanning", "image", subject)
			var rep *scan.Report
			if idx != nil {
				rep, err = s.Scan(ctx, idx)
			} else {
				rep, err = s.ScanImage(ctx, img)
			}
			if err != nil {
				return fmt.Errorf("scanning %s: %w", subject, err)
			}
			policy, err := gatePolicy(lc)
			if err != nil {
				return err
			}
			gerr := scan.Gate(rep, policy)
			reports := lc.Scan.Reports
			if f.format != "" || f.output != "" {
				reports = append(reports, pipeline.ReportConfig{Format: cmp.Or(f.format, "json"), Output: cmp.Or(f.output, "-")})
			}
			if err := writeReports(rep, reports, "", g.humanOut(), cmd.OutOrStdout()); err != nil {
				return err
			}
			return gerr
		},
	}
	fl := cmd.Flags()
	registerScanConfigFlags(fl)
	fl.BoolVar(&f.allowStale, "allow-stale-db", false, "scan with a DB older than scan.db.max_age (warns with its age)")
	fl.StringVar(&f.format, "format", "", "report format: json, sarif, table, or an SBOM of the image: spdx-json, cyclonedx (default json when --output is set)")
	fl.StringVarP(&f.output, "output", "o", "", "report file (- for stdout)")
	return cmd
}

// newScanner makes the Trivy scanner from the scan config.
func newScanner(lc *loadedConfig, allowStale bool, log *slog.Logger) (*trivy.Scanner, error) {
	opts := []trivy.Option{trivy.WithMaxAge(lc.Scan.DB.MaxAge), trivy.WithAllowStale(allowStale), trivy.WithLogger(log),
		trivy.WithMaxDecompressed(lc.Scan.MaxLayerBytes, lc.Scan.MaxImageBytes)}
	if d := lc.Scan.DB.Dir; d != "" {
		opts = append(opts, trivy.WithDBDir(lc.path(d)))
	}
	if d := lc.Scan.CacheDir; d != "" {
		opts = append(opts, trivy.WithCacheDir(lc.path(d)))
	}
	if len(lc.Scan.VEX) > 0 {
		opts = append(opts, trivy.WithVEX(lc.Scan.VEX...))
	}
	remote, err := scanRemoteOptions(lc)
	if err != nil {
		return nil, err
	}
	opts = append(opts, remote...)
	s, err := trivy.New(opts...)
	var ve *trivy.VEXError
	if errors.As(err, &ve) {
		return nil, &pipeline.ConfigError{File: lc.File, Key: fmt.Sprintf("scan.vex[%d]", ve.Index), Msg: ve.Error()}
	}
	return s, err
}

// scanRemoteOptions are the scanner options of scan.server (a Trivy
// server; its token from the variable scan.server_token_env names) and
// scan.cache (a shared Redis). An unset or empty token variable is a config
// error naming the key; the token itself is never shown.
func scanRemoteOptions(lc *loadedConfig) ([]trivy.Option, error) {
	var opts []trivy.Option
	sc := lc.Scan
	if sc.Server != "" {
		c := trivy.ServerConfig{URL: sc.Server, TokenHeader: sc.ServerTokenHeader, Headers: sc.ServerHeaders, Timeout: sc.ServerTimeout}
		if v := sc.ServerTokenEnv; v != "" {
			tok, ok := os.LookupEnv(v)
			if !ok || tok == "" {
				return nil, &pipeline.ConfigError{File: lc.File, Line: pipeline.KeyLine(lc.data, "scan.server_token_env"), Key: "scan.server_token_env",
					Msg: fmt.Sprintf("the variable %s is not set (or empty): it must hold the trivy server's token", v)}
			}
			c.Token = tok
		}
		opts = append(opts, trivy.WithServer(c))
	}
	if sc.Cache != "" {
		c := trivy.RedisConfig{URL: sc.Cache, TTL: sc.CacheTTL}
		if sc.CacheCA != "" {
			c.CACert, c.Cert, c.Key = lc.path(sc.CacheCA), lc.path(sc.CacheCert), lc.path(sc.CacheKey)
		}
		opts = append(opts, trivy.WithRedisCache(c))
	}
	return opts, nil
}

// openVEXDocument is what the openvex attestation attaches: the OpenVEX
// documents of scan.vex as one (sign.OpenVEX). A document that is not
// OpenVEX, or cannot be read, is a config error naming it.
func openVEXDocument(lc *loadedConfig) ([]byte, error) {
	docs := make([]sign.VEXDocument, len(lc.Scan.VEX))
	for i, p := range lc.Scan.VEX {
		b, err := os.ReadFile(lc.path(p))
		if err != nil {
			return nil, &pipeline.ConfigError{File: lc.File, Key: fmt.Sprintf("scan.vex[%d]", i), Msg: "reading vex document: " + err.Error()}
		}
		docs[i] = sign.VEXDocument{Name: p, Data: b}
	}
	doc, err := sign.OpenVEX(docs...)
	var nov *sign.NotOpenVEXError
	if errors.As(err, &nov) {
		for i, p := range lc.Scan.VEX {
			if p == nov.Name {
				return nil, &pipeline.ConfigError{File: lc.File, Key: fmt.Sprintf("scan.vex[%d]", i), Msg: nov.Error() + " (sign.attestations lists openvex)"}
			}
		}
	}
	if err != nil {
		return nil, &pipeline.ConfigError{File: lc.File, Key: "scan.vex", Msg: err.Error()}
	}
	return doc, nil
}

// path resolves p, relative to the config file's directory, with ~ expanded.
func (lc *loadedConfig) path(p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(lc.Dir, p)
}

// gatePolicy is the scan gate from the config.
func gatePolicy(lc *loadedConfig) (scan.Policy, error) {
	p := scan.Policy{IgnoreUnfixed: lc.Scan.IgnoreUnfixed, AllowUnjudged: lc.Scan.AllowUnjudged}
	for _, s := range lc.Scan.Severity {
		p.Severities = append(p.Severities, scan.Severity(s))
	}
	if f := lc.Scan.IgnoreFile; f != "" {
		ig, err := scan.LoadIgnoreFile(lc.path(f))
		if err != nil {
			return p, &pipeline.ConfigError{File: lc.File, Key: "scan.ignore_file", Msg: err.Error()}
		}
		p.Ignore = ig
	}
	return p, nil
}

// writeReports prints the table to human and writes each configured
// report; an output of "-" is stdout. When target is set and several
// targets write reports, "{{.Target}}" in an output path names the file.
// human may be nil (--quiet): no table.
func writeReports(rep *scan.Report, reports []pipeline.ReportConfig, target string, human, stdout io.Writer) error {
	if human != nil {
		if err := scan.WriteTable(human, rep); err != nil {
			return err
		}
	}
	for _, rc := range reports {
		f, err := scan.ParseFormat(rc.Format)
		if err != nil {
			return err
		}
		out := strings.ReplaceAll(rc.Output, "{{.Target}}", target)
		if out == "-" {
			if err := scan.Write(stdout, rep, f); err != nil {
				return err
			}
			continue
		}
		if err := writeFileAtomic(out, func(w io.Writer) error { return scan.Write(w, rep, f) }); err != nil {
			return fmt.Errorf("writing %s report: %w", rc.Format, err)
		}
	}
	return nil
}

// writeFileAtomic creates path's directory and writes path atomically,
// readable by all (reports, results).
func writeFileAtomic(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, 0o644, write)
}

// loadImage opens IMAGE: oci:DIR[@digest] or a registry reference, which is
// resolved to a digest once. It returns a printable subject and either an
// index or an image.
func loadImage(ctx context.Context, lc *loadedConfig, ref string) (string, v1.ImageIndex, v1.Image, error) {
	if strings.HasPrefix(ref, build.LayoutPrefix) {
		// Without a digest, signatures and attestations in the layout do not
		// count as candidates.
		root, desc, err := build.OpenLayoutRef(ref, func(d v1.Descriptor) bool {
			return d.Annotations[publish.AnnotationKind] != publish.KindImage && d.Annotations[sign.AnnotationKind] != ""
		})
		if err != nil {
			return "", nil, nil, err
		}
		dir, _, _ := strings.Cut(strings.TrimPrefix(ref, build.LayoutPrefix), "@")
		subject := build.LayoutPrefix + dir + "@" + desc.Digest.String()
		if desc.MediaType.IsIndex() {
			idx, err := root.ImageIndex(desc.Digest)
			return subject, idx, nil, err
		}
		img, err := root.Image(desc.Digest)
		return subject, nil, img, err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", nil, nil, &usageError{fmt.Errorf("parsing image reference %q: %w", ref, err)}
	}
	ropts, err := readOptions(lc)
	if err != nil {
		return "", nil, nil, err
	}
	ropts = append(ropts, remote.WithContext(ctx))
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return "", nil, nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	subject := r.Context().Name() + "@" + desc.Digest.String()
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		return subject, idx, nil, err
	}
	img, err := desc.Image()
	return subject, nil, img, err
}

func newDBCmd(g *globalFlags) *cobra.Command {
	db := &cobra.Command{Use: "db", Short: "Manage the vulnerability database"}
	pull := &cobra.Command{
		Use:     "pull",
		Short:   "Download the DB from scan.db.repositories (tried in order)",
		Example: `  slipway db pull --db-dir ~/.cache/trivy --repository ghcr.io/aquasecurity/trivy-db:2`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			lc, err := loadConfig(g, cmd.Flags(), map[string]string{"db-dir": "scan.db.dir", "repository": "scan.db.repositories"})
			if err != nil {
				return err
			}
			if len(lc.Scan.DB.Repositories) == 0 {
				return &pipeline.ConfigError{File: lc.File, Key: "scan.db.repositories", Msg: "no repository to pull the DB from (set scan.db.repositories or --repository)"}
			}
			dir, err := dbDir(lc)
			if err != nil {
				return err
			}
			ropts, err := readOptions(lc)
			if err != nil {
				return err
			}
			st, err := trivy.Pull(cmd.Context(), dir, lc.Scan.DB.Repositories, trivy.WithRemoteOptions(ropts...), trivy.WithPullLogger(g.logger()))
			if err != nil {
				return err
			}
			printDBStatus(cmd.OutOrStdout(), dir, st)
			return nil
		},
	}
	pull.Flags().String("db-dir", "", "DB dir in Trivy's cache layout (config: scan.db.dir)")
	pull.Flags().StringSlice("repository", nil, "OCI repository of the DB artifact (config: scan.db.repositories)")
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the DB's version and age; exit 1 if it is missing or older than scan.db.max_age",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			lc, err := loadConfig(g, cmd.Flags(), map[string]string{"db-dir": "scan.db.dir"})
			if err != nil {
				return err
			}
			s, err := newScanner(lc, false, g.logger())
			if err != nil {
				return err
			}
			dir, _ := dbDir(lc)
			st, err := s.CheckDB()
			if err != nil {
				return err
			}
			if lc.Scan.Server != "" {
				dir = st.Dir // the trivy server (URL without credentials): its DB
			}
			printDBStatus(cmd.OutOrStdout(), dir, st)
			return nil
		},
	}
	status.Flags().String("db-dir", "", "DB dir in Trivy's cache layout (config: scan.db.dir)")
	db.AddCommand(pull, status)
	return db
}

func dbDir(lc *loadedConfig) (string, error) {
	if lc.Scan.DB.Dir != "" {
		return lc.path(lc.Scan.DB.Dir), nil
	}
	return trivy.DefaultDBDir()
}

func printDBStatus(w io.Writer, dir string, st trivy.DBStatus) {
	fmt.Fprintf(w, "dir:            %s\n", dir)
	fmt.Fprintf(w, "schema version: %d\n", st.SchemaVersion)
	fmt.Fprintf(w, "updated at:     %s (%s ago)\n", st.UpdatedAt.UTC().Format(time.RFC3339), st.Age.Round(time.Minute))
	if !st.NextUpdate.IsZero() {
		fmt.Fprintf(w, "next update:    %s\n", st.NextUpdate.UTC().Format(time.RFC3339))
	}
	if !st.DownloadedAt.IsZero() {
		fmt.Fprintf(w, "downloaded at:  %s\n", st.DownloadedAt.UTC().Format(time.RFC3339))
	}
}
