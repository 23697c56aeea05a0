// Command slipway turns Go source into signed, vulnerability-scanned,
// multi-platform container images, without Docker.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipway: "+err.Error())
	}
	os.Exit(exitCode(err))
}
