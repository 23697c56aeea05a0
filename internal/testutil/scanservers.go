package testutil

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects a child's output for the test log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon runs cmd until the test ends, waiting until ready reports
// true; its output goes to the test log if the test fails.
func startDaemon(t testing.TB, name string, cmd *exec.Cmd, ready func() bool) {
	t.Helper()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before it was ready (%v):\n%s", name, err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60s:\n%s", name, out.String())
		}
	}
}

// RedisServer is a redis-server on loopback, without persistence.
type RedisServer struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// URL is redis://127.0.0.1:PORT (or with the password).
	URL string
}

// NeedRedis returns the path of Debian's redis-server, skipping the test
// when it is missing unless SLIPWAY_REQUIRE_TOOLS is set (make deps
// installs it), and in the unit tier.
func NeedRedis(t testing.TB) string {
	t.Helper()
	if os.Getenv("SLIPWAY_UNIT") != "" {
		t.Skip("unit tier (make test-unit): no redis-server")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SLIPWAY_REQUIRE_TOOLS") != "" {
			t.Fatal("redis-server missing (make deps installs the redis-server package)")
		}
		t.Skip("redis-server not installed (apt-get install redis-server)")
	}
	return bin
}

// StartRedis starts redis-server on 127.0.0.1 on a free port, in a temp
// dir, with persistence off; password, when set, is required (requirepass).
// It stops when the test ends.
func StartRedis(t testing.TB, password string) *RedisServer {
	t.Helper()
	bin := NeedRedis(t)
	port := FreePort(t)
	dir := t.TempDir()
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	startDaemon(t, "redis-server", exec.Command(bin, args...), func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		cmd := "PING\r\n"
		if password != "" {
			cmd = fmt.Sprintf("AUTH %s\r\nPING\r\n", password)
		}
		if _, err := c.Write([]byte(cmd)); err != nil {
			return false
		}
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		return bytes.Contains(buf[:n], []byte("+"))
	})
	u := "redis://" + addr
	if password != "" {
		u = "redis://:" + password + "@" + addr
	}
	return &RedisServer{Addr: addr, URL: u}
}

// StartRedisTLS starts redis-server on 127.0.0.1 with TLS only (rediss://,
// a certificate from a throwaway CA; clients need no certificate). It
// returns the server and the path of the CA's PEM file.
func StartRedisTLS(t testing.TB) (*RedisServer, string) {
	t.Helper()
	bin := NeedRedis(t)
	dir := t.TempDir()
	ca, cert, key := NewTLSCert(t, "127.0.0.1")
	for name, b := range map[string][]byte{"ca.pem": ca, "cert.pem": cert, "key.pem": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(port), "--dir", dir,
		"--tls-cert-file", filepath.Join(dir, "cert.pem"), "--tls-key-file", filepath.Join(dir, "key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--daemonize", "no"}
	startDaemon(t, "redis-server (TLS)", exec.Command(bin, args...), func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return &RedisServer{Addr: addr, URL: "rediss://" + addr}, filepath.Join(dir, "ca.pem")
}

// TrivyServer is a `trivy server` on loopback.
type TrivyServer struct {
	// URL is http://127.0.0.1:PORT.
	URL string
}

// StartTrivyServer runs the trivy peer as `trivy server` on 127.0.0.1 on a
// free port with the DB in dbDir (Trivy's cache layout: dbDir/db/trivy.db),
// never updating it, requiring token when set (in tokenHeader, default
// Trivy-Token). Its own cache is a temp dir. It stops when the test ends.
func StartTrivyServer(t testing.TB, trivyBin, dbDir, token, tokenHeader string) *TrivyServer {
	t.Helper()
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// The server reads the DB from <cache-dir>/db and keeps its scan cache
	// under <cache-dir>/fanal: give it a copy-free view of dbDir's db.
	cacheDir := t.TempDir()
	if err := os.Symlink(filepath.Join(dbDir, "db"), filepath.Join(cacheDir, "db")); err != nil {
		t.Fatal(err)
	}
	args := []string{"server", "--listen", addr, "--cache-dir", cacheDir, "--skip-db-update", "--quiet"}
	if token != "" {
		args = append(args, "--token", token)
	}
	if tokenHeader != "" {
		args = append(args, "--token-header", tokenHeader)
	}
	cmd := exec.Command(trivyBin, args...)
	// Nothing but loopback: no proxy, no Docker or Java DB look-ups.
	cmd.Env = append(os.Environ(), "TRIVY_NO_PROGRESS=true", "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY=*")
	u := "http://" + addr
	startDaemon(t, "trivy server", cmd, func() bool {
		resp, err := http.Get(u + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return &TrivyServer{URL: u}
}
