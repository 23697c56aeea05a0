// Command slipway turns Go source into signed, vulnerability-scanned,
// multi-platform container images, without Docker.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/slipway-build/slipway/build"
	// Cloud KMS key references (awskms://, gcpkms://, azurekms://,
	// hashivault://) for sign.key and policy keys.
	_ "github.com/slipway-build/slipway/sign/kms"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	g := &globalFlags{}
	err := newRoot(g).ExecuteContext(ctx)
	stop()
	if err != nil {
		printError(os.Stderr, err, g.verbose)
	}
	os.Exit(exitCode(err))
}

// printError prints err once, on one line: joined errors (one per target)
// are separated by "; ". A failed go build's line quotes the compiler's
// first error; with -v the go command's whole output comes first.
func printError(w io.Writer, err error, verbose bool) {
	var gbe *build.GoBuildError
	if verbose && errors.As(err, &gbe) && strings.TrimSpace(gbe.Output) != "" {
		fmt.Fprintln(w, strings.TrimSpace(gbe.Output))
	}
	fmt.Fprintln(w, "slipway: "+strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
}
