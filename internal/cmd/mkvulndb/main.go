// Command mkvulndb builds slipway's fixture vulnerability DB (real advisories
// in testdata/vulndb) in Trivy's cache layout, and optionally pushes it to a
// registry as Trivy's DB artifact.
//
//	go run ./internal/cmd/mkvulndb -o DIR [-fixtures testdata/vulndb] [-push REF]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway-build/slipway/internal/vulndb"
)

func main() {
	out := flag.String("o", "", "output directory (Trivy cache layout: DIR/db/trivy.db, DIR/db/metadata.json)")
	fixtures := flag.String("fixtures", "testdata/vulndb", "directory of YAML DB fixtures")
	updated := flag.String("updated-at", "", "UpdatedAt of the DB, RFC 3339 (default now)")
	push := flag.String("push", "", "also push the DB as an OCI artifact to this reference (e.g. 127.0.0.1:5000/trivy-db:2)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *fixtures, *updated, *push); err != nil {
		fmt.Fprintln(os.Stderr, "mkvulndb:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, fixtures, updated, push string) error {
	at := time.Now()
	if updated != "" {
		t, err := time.Parse(time.RFC3339, updated)
		if err != nil {
			return fmt.Errorf("parsing -updated-at: %w", err)
		}
		at = t
	}
	if err := vulndb.Build(fixtures, out, at); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s/db (updated at %s)\n", out, at.UTC().Format(time.RFC3339))
	if push == "" {
		return nil
	}
	ref, err := name.ParseReference(push)
	if err != nil {
		return fmt.Errorf("parsing -push: %w", err)
	}
	d, err := vulndb.Push(ctx, out, ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	fmt.Println(ref.Context().Digest(d.String()).String())
	return nil
}
