//go:build linux

package testutil

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// isolatedEnv marks a test process that IsolateNetwork re-executed in a
// network namespace of its own; its children inherit it and the namespace.
const isolatedEnv = "SLIPWAY_NETNS"

// IsolateNetwork runs the tests of a package in a network namespace whose
// only interface is loopback, so that nothing a test starts (in-process
// servers, peer tools such as cosign, which contacts TUF at start) can reach
// a non-loopback address, while all of them still reach each other on
// 127.0.0.1. Call it from TestMain: os.Exit(testutil.IsolateNetwork(m)).
//
// The first call re-executes the test binary under `unshare -n` with
// loopback up, and returns the child's exit code; in the child it checks
// that the namespace really holds only loopback and runs m. When no such
// namespace can be made (not root, no unshare or ip), it fails the run if
// SLIPWAY_REQUIRE_TOOLS is set; otherwise no test of the package runs
// (go test reports "no tests to run") — never with the network.
func IsolateNetwork(m *testing.M) int { return RunIsolated(m.Run) }

// RunIsolated is IsolateNetwork for a TestMain with set-up: run (set-up,
// m.Run, tear-down) runs only in the isolated process; see IsolateNetwork.
func RunIsolated(run func() int) int {
	if os.Getenv(isolatedEnv) == "1" {
		if err := checkIsolated(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %s=1 but not isolated: %v\n", isolatedEnv, err)
			return 1
		}
		return run()
	}
	if err := probeUnshare(); err != nil {
		if os.Getenv("SLIPWAY_REQUIRE_TOOLS") != "" {
			fmt.Fprintf(os.Stderr, "FAIL: cannot make a loopback-only network namespace: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "SKIP: every test of this package needs a loopback-only network namespace: %v\n", err)
		// m.Run parses the flags only when nobody did: parse them first so
		// that -test.run from the command line does not override this one.
		if !flag.Parsed() {
			flag.Parse()
		}
		if err := flag.Set("test.run", "^$"); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			return 1
		}
		return run()
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	args := append([]string{"-n", "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`, exe}, os.Args[1:]...)
	cmd := exec.Command("unshare", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), isolatedEnv+"=1")
	// The child dies with this process (go test's timeout kills this one).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "FAIL: running the tests in a network namespace: %v\n", err)
		return 1
	}
	return 0
}

// probeUnshare checks that unshare -n and ip link work here.
func probeUnshare() error {
	out, err := exec.Command("unshare", "-n", "--", "ip", "link", "set", "lo", "up").CombinedOutput()
	if err != nil {
		return fmt.Errorf("unshare -n ip link set lo up: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkIsolated returns an error unless every network interface of this
// process is a loopback one.
func checkIsolated() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("interface %s is not loopback", i.Name)
		}
	}
	return nil
}

// Isolated reports whether this process runs in the loopback-only network
// namespace that IsolateNetwork made.
func Isolated() bool {
	return os.Getenv(isolatedEnv) == "1" && checkIsolated() == nil
}

// RequireIsolated fails the test unless it runs in the loopback-only
// network namespace of IsolateNetwork (a package whose tests start peers
// that may dial out must call IsolateNetwork from its TestMain).
func RequireIsolated(t testing.TB) {
	t.Helper()
	if !Isolated() {
		t.Fatal("not in a loopback-only network namespace: call testutil.IsolateNetwork from this package's TestMain")
	}
}

// NoRoute fails the test unless dialling public addresses (IPv4 and IPv6)
// fails at once with "network is unreachable".
func NoRoute(t testing.TB) {
	t.Helper()
	for _, addr := range []string{"1.1.1.1:443", "[2606:4700:4700::1111]:443"} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			conn.Close()
			t.Fatalf("dial %s: connected, want network is unreachable", addr)
		}
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Fatalf("dial %s: %v, want network is unreachable", addr, err)
		}
	}
}
