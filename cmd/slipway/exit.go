package main

import (
	"errors"
	"strings"

	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
	"github.com/slipway-build/slipway/sign"
)

// Exit codes (DEVELOPERS.md): 0 ok, 1 operational error, 2 usage or config
// error, 3 policy violation.
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitPolicy = 3
)

// usageError marks a bad command line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitCode maps an error to the process exit code. A run with both an
// operational failure and a policy violation exits 1: the policy could not
// be fully evaluated.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var ce *pipeline.ConfigError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	// cobra reports an unknown subcommand with a plain error.
	if strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage
	}
	if allPolicy(err) {
		return exitPolicy
	}
	return exitError
}

// allPolicy reports whether err is a policy violation, or a join of errors
// that all are.
func allPolicy(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		for _, e := range errs {
			if !allPolicy(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	var pv *scan.PolicyViolation
	var se *sign.PolicyError
	var rd *pipeline.RebuildDue
	return errors.As(err, &pv) || errors.As(err, &se) || errors.As(err, &rd)
}
