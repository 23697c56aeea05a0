// Command slipway turns Go source into signed, vulnerability-scanned,
// multi-platform container images, without Docker.
package main

import (
	"context"
	"errors"
	"fmt"
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
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		// The go command's own errors, verbatim, before slipway's line.
		var gbe *build.GoBuildError
		if errors.As(err, &gbe) && strings.Count(strings.TrimSpace(gbe.Output), "\n") > 0 {
			fmt.Fprintln(os.Stderr, strings.TrimSpace(gbe.Output))
		}
		// One line: joined errors (one per target) are separated by "; ".
		fmt.Fprintln(os.Stderr, "slipway: "+strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
	}
	os.Exit(exitCode(err))
}
