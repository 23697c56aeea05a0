//go:build !linux

package testutil

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// IsolateNetwork needs Linux network namespaces: elsewhere it fails the run
// if SLIPWAY_REQUIRE_TOOLS is set and otherwise runs no test of the package.
func IsolateNetwork(m *testing.M) int { return RunIsolated(m.Run) }

// RunIsolated needs Linux network namespaces; see IsolateNetwork.
func RunIsolated(run func() int) int {
	if os.Getenv("SLIPWAY_REQUIRE_TOOLS") != "" {
		fmt.Fprintln(os.Stderr, "FAIL: loopback-only network namespaces need Linux")
		return 1
	}
	fmt.Fprintln(os.Stderr, "SKIP: every test of this package needs a loopback-only network namespace (Linux)")
	if !flag.Parsed() {
		flag.Parse()
	}
	if err := flag.Set("test.run", "^$"); err != nil {
		return 1
	}
	return run()
}

// Isolated reports false: no network namespaces outside Linux.
func Isolated() bool { return false }

// RequireIsolated fails the test: no network namespaces outside Linux.
func RequireIsolated(t testing.TB) {
	t.Helper()
	t.Fatal("not in a loopback-only network namespace (Linux only)")
}

// NoRoute fails the test: no network namespaces outside Linux.
func NoRoute(t testing.TB) {
	t.Helper()
	t.Fatal("NoRoute: Linux only")
}
