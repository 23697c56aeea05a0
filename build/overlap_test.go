package build

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink goroutines can write while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// appTree writes a small main package and returns a scratch target for it
// (without its Base) on two platforms.
func appTree(t *testing.T) Target {
	t.Helper()
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"go.mod":  "module example.com/app\n\ngo 1.26\n",
		"main.go": "package main\n\nfunc main() { println(\"app\") }\n",
	})
	tg := localTarget(t, root)
	p, _ := ParsePlatform("linux/arm64")
	tg.Platforms = append(tg.Platforms, p)
	tg.Base = nil
	return tg
}

// The platforms compile while the base is being resolved: a base that
// only arrives once both binaries are compiled does not hold them up (if
// the compiles waited for it, this would never finish).
func TestCompileBesideBaseResolution(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	var logs syncBuffer
	g, err := New(WithJobs(2), WithCACertificates(CANone), WithBinaryCache(t.TempDir()),
		WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	tg := appTree(t)
	tg.ResolveBase = func(ctx context.Context) (*Base, error) {
		deadline := time.Now().Add(3 * time.Minute)
		for strings.Count(logs.String(), "msg=compiled") < 2 {
			if time.Now().After(deadline) {
				return nil, errors.New("the platforms did not compile before the base was resolved")
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return ResolveBase(ctx, Scratch)
	}
	res, err := g.Build(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	// The same image as with the base given up front.
	want := appTreeWithBase(t, tg)
	wres, err := g.Build(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != wres.Digest {
		t.Fatalf("base resolved beside the compiles gave %s, given up front %s", res.Digest, wres.Digest)
	}
}

func appTreeWithBase(t *testing.T, tg Target) Target {
	t.Helper()
	base, err := ResolveBase(context.Background(), Scratch)
	if err != nil {
		t.Fatal(err)
	}
	tg.ResolveBase, tg.Base = nil, base
	return tg
}

// A base that fails to resolve fails the build with its error, cancels the
// compiles, and leaves nothing in TMPDIR.
func TestBaseErrorCancelsCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	g, tmp := isolatedBuilder(t)
	tg := appTree(t)
	boom := errors.New("base: denied")
	tg.ResolveBase = func(ctx context.Context) (*Base, error) {
		time.Sleep(100 * time.Millisecond) // the compiles have started
		return nil, boom
	}
	if _, err := g.Build(context.Background(), tg); !errors.Is(err, boom) {
		t.Fatalf("Build = %v, want the base's error", err)
	}
	assertEmpty(t, tmp)
}

// After a change the build starts beside the cache key; on a hit it is
// cancelled. Either way the binary is the right one, and the cancelled go
// build leaves nothing behind in TMPDIR (its work directory is slipway's).
func TestSpeculativeBuildCancelledOnHit(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go code")
	}
	g, tmp := isolatedBuilder(t)
	tg := appTreeWithBase(t, appTree(t))
	first, err := g.Build(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		again, err := g.Build(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		for j, pi := range again.Images {
			if !pi.Cached {
				t.Fatalf("rebuild %d, %s: not a cache hit", i, PlatformString(pi.Platform))
			}
			if pi.Digest != first.Images[j].Digest {
				t.Fatalf("rebuild %d, %s: digest %s, first build %s", i, PlatformString(pi.Platform), pi.Digest, first.Images[j].Digest)
			}
		}
		assertEmpty(t, tmp)
	}
}

// isolatedBuilder is a builder with a binary cache, and the TMPDIR it
// builds in, a directory of the test's own.
func isolatedBuilder(t *testing.T) (*GoBuilder, string) {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	g, err := New(WithCACertificates(CANone), WithBinaryCache(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return g, tmp
}

// assertEmpty fails if dir holds anything (a go build work directory or
// slipway's build directory left behind).
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if p != dir {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Fatalf("left behind in TMPDIR: %v", left)
	}
}
