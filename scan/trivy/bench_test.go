package trivy

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// largeDebianBase is a ~100 MB Debian 12 root for arch: a dpkg status file
// of 1500 packages (plus the vulnerable glibc and apt), 400 executables and
// filler files, seeded so both platforms differ but runs repeat.
func largeDebianBase(b testing.TB, arch string, seed uint64) v1.Layer {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	pkgs := append([]dpkg(nil), vulnerableDebianPkgs...)
	for i := range 1500 {
		pkgs = append(pkgs, dpkg{fmt.Sprintf("pkg-%04d", i), fmt.Sprintf("src-%04d", i/3), fmt.Sprintf("1.%d.%d-%d", i%7, i%13, i%3+1)})
	}
	files := debianFiles(arch, pkgs)
	const total = 100 << 20
	size := 0
	for i := 0; size < total; i++ {
		n := 64<<10 + r.IntN(192<<10)
		data := make([]byte, n)
		// Half random, half text-like: compresses about as well as a real root.
		for j := 0; j < n/2; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < n/2; k++ {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		for j := n / 2; j < n; j++ {
			data[j] = "etc usr lib share doc debian copyright\n"[j%39]
		}
		f := file{name: fmt.Sprintf("usr/share/filler/%03d/f%05d", i%100, i), data: data}
		if i%5 == 0 {
			f.name, f.mode = fmt.Sprintf("usr/bin/tool%05d", i), 0o755
		}
		files = append(files, f)
		size += n
	}
	return layer(b, files...)
}

func benchIndex(b *testing.B) v1.ImageIndex {
	bin := goBinary(b, "vulnapp")
	app := layer(b, file{name: "app/server", mode: 0o755, data: bin})
	return index(b,
		image(b, amd64, largeDebianBase(b, "amd64", 1), app),
		image(b, arm64, largeDebianBase(b, "arm64", 2), app))
}

// BenchmarkScanColdWarm scans a two-platform image on a ~100 MB Debian
// base: cold (empty layer cache) and warm (base and app layers cached, as
// on a rebuild). rss reports the peak RSS of a separate process scanning
// the image from an OCI layout, cold and warm.
func BenchmarkScanColdWarm(b *testing.B) {
	db := fixtureDB(b, now.Add(-time.Hour))
	idx := benchIndex(b)
	if _, err := idx.Digest(); err != nil { // compress and hash once, outside the timings
		b.Fatal(err)
	}
	ctx := context.Background()

	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			s, err := New(WithDBDir(db), WithCacheDir(b.TempDir()), WithClock(clock))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.Scan(ctx, idx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		s, err := New(WithDBDir(db), WithCacheDir(b.TempDir()), WithClock(clock))
		if err != nil {
			b.Fatal(err)
		}
		r, err := s.Scan(ctx, idx)
		if err != nil {
			b.Fatal(err)
		}
		if len(findings(r, "CVE-2023-4911")) != 2 || len(findings(r, "CVE-2022-32149")) != 1 {
			b.Fatalf("unexpected findings: %s", summary(r))
		}
		for b.Loop() {
			if _, err := s.Scan(ctx, idx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rss", func(b *testing.B) {
		dir := cmp.Or(os.Getenv("SLIPWAY_BENCH_LAYOUT"), filepath.Join(b.TempDir(), "layout"))
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.AppendIndex(idx); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			cache := b.TempDir() // the first process runs cold, the second warm
			for _, phase := range []string{"cold", "warm"} {
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
				cmd.Env = append(os.Environ(), helperEnv+"=1", "HELPER_DB="+db, "HELPER_CACHE="+cache, "HELPER_LAYOUT="+dir)
				start := time.Now()
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("%v\n%s", err, out)
				}
				elapsed := time.Since(start)
				var kb float64
				for _, line := range strings.Split(string(out), "\n") {
					if v, ok := strings.CutPrefix(line, "VMHWM "); ok {
						kb, err = strconv.ParseFloat(v, 64)
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				if kb == 0 {
					b.Fatalf("helper reported no peak RSS:\n%s", out)
				}
				b.ReportMetric(kb/1024, phase+"-peak-rss-MB")
				b.ReportMetric(elapsed.Seconds(), phase+"-process-s")
			}
		}
	})
}
