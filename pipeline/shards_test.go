package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/publish"
)

// platformBuilder "compiles" by picking one fixed random image per target
// and platform (the same on every runner, as a reproducible build is), and
// assembles the index as GoBuilder does.
type platformBuilder struct {
	mu   sync.Mutex
	imgs map[string]v1.Image
}

func (b *platformBuilder) Build(ctx context.Context, t build.Target) (*build.Result, error) {
	base, err := t.ResolveBase(ctx)
	if err != nil {
		return nil, err
	}
	var pis []build.PlatformImage
	for _, p := range t.Platforms {
		key := t.Name + " " + build.PlatformString(p)
		b.mu.Lock()
		img := b.imgs[key]
		if img == nil {
			if img, err = random.Image(512, 2); err != nil {
				b.mu.Unlock()
				return nil, err
			}
			b.imgs[key] = img
		}
		b.mu.Unlock()
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		pis = append(pis, build.PlatformImage{Platform: p, Image: img, Digest: d, BinarySize: 7})
	}
	t.Base = base
	return build.Assemble(t, pis)
}

var (
	amd64  = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64  = v1.Platform{OS: "linux", Architecture: "arm64"}
	testID = ShardIdentity{Slipway: "v1.2.3", Config: ConfigDigest([]byte("targets: …"))}
)

func shardJobs(commit string, dirty bool, ps ...v1.Platform) []Job {
	var jobs []Job
	for _, name := range []string{"hello", "worker"} {
		jobs = append(jobs, Job{
			Target:  build.Target{Name: name, Dir: "/src", Platforms: ps, Created: time.Unix(1700000000, 0), Revision: commit, Source: "https://example.com/src"},
			BaseRef: build.Scratch,
			Git:     GitInfo{Commit: commit, Dirty: dirty},
		})
	}
	return jobs
}

func scratchResolver(ctx context.Context, ref string) (*build.Base, error) {
	return build.ResolveBase(ctx, ref)
}

// writeShard runs the pipeline into a layout in dir, recording shards, and
// returns the index digest of each target.
func writeShard(t *testing.T, b build.Builder, dir string, id ShardIdentity, jobs []Job) map[string]string {
	t.Helper()
	l, err := publish.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := RecordShards(&LayoutDestination{Layout: l, Dir: dir}, id)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), jobs, Stages{Builder: b, ResolveBase: scratchResolver, Destination: d}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, tr := range res.Targets {
		out[tr.Target] = tr.Digest
	}
	return out
}

func TestMergeShardsSameDigest(t *testing.T) {
	b := &platformBuilder{imgs: map[string]v1.Image{}}
	tmp := t.TempDir()
	const commit = "0123456789abcdef0123456789abcdef01234567"
	one := writeShard(t, b, filepath.Join(tmp, "one"), testID, shardJobs(commit, false, amd64, arm64))
	writeShard(t, b, filepath.Join(tmp, "s1"), testID, shardJobs(commit, false, amd64))
	writeShard(t, b, filepath.Join(tmp, "s2"), testID, shardJobs(commit, false, arm64))

	jobs := shardJobs(commit, false, amd64, arm64)
	// The order of --from does not matter: the config's platforms do.
	s, err := OpenShards([]Shard{{Name: "oci:s2", Dir: filepath.Join(tmp, "s2")}, {Name: "oci:s1", Dir: filepath.Join(tmp, "s1")}}, jobs, testID)
	if err != nil {
		t.Fatal(err)
	}
	merged := writeShard(t, s, filepath.Join(tmp, "merged"), testID, jobs)
	for _, target := range []string{"hello", "worker"} {
		if merged[target] == "" || merged[target] != one[target] {
			t.Errorf("%s: merged %s, one machine %s", target, merged[target], one[target])
		}
	}
	// The merged layout is itself a shard of both platforms.
	if _, err := OpenShards([]Shard{{Name: "oci:merged", Dir: filepath.Join(tmp, "merged")}}, jobs, testID); err != nil {
		t.Fatalf("merged layout as a shard: %v", err)
	}
}

func TestMergeShardsRefused(t *testing.T) {
	b := &platformBuilder{imgs: map[string]v1.Image{}}
	tmp := t.TempDir()
	const commit = "0123456789abcdef0123456789abcdef01234567"
	const other = "fedcba9876543210fedcba9876543210fedcba98"
	shard := func(name string, id ShardIdentity, commit string, dirty bool, ps ...v1.Platform) Shard {
		dir := filepath.Join(tmp, name)
		writeShard(t, b, dir, id, shardJobs(commit, dirty, ps...))
		return Shard{Name: "oci:" + name, Dir: dir}
	}
	s1 := shard("s1", testID, commit, false, amd64)
	s2 := shard("s2", testID, commit, false, arm64)
	both := shard("both", testID, commit, false, amd64, arm64)
	oldCommit := shard("old", testID, other, false, arm64)
	dirty := shard("dirty", testID, commit, true, arm64)
	otherConfig := shard("config", ShardIdentity{Slipway: testID.Slipway, Config: ConfigDigest([]byte("x"))}, commit, false, arm64)
	otherVersion := shard("version", ShardIdentity{Slipway: "v9", Config: testID.Config}, commit, false, arm64)
	jobs := shardJobs(commit, false, amd64, arm64)

	for _, tc := range []struct {
		name   string
		shards []Shard
		jobs   []Job
		want   []string
	}{
		{"duplicate platform", []Shard{s1, both}, jobs, []string{"linux/amd64", "oci:s1", "oci:both", "two shards"}},
		{"missing platform", []Shard{s1}, jobs, []string{"no shard has target hello for platform linux/arm64"}},
		{"other commit", []Shard{s1, oldCommit}, jobs, []string{"shard oci:old", "commit fedcba987654"}},
		{"modified checkout", []Shard{s1, dirty}, jobs, []string{"shard oci:dirty", "modified checkout"}},
		{"other config", []Shard{s1, otherConfig}, jobs, []string{"shard oci:config", "another config"}},
		{"other slipway", []Shard{s1, otherVersion}, jobs, []string{"shard oci:version", "slipway v9"}},
		{"platform not asked for", []Shard{s1, s2}, shardJobs(commit, false, amd64), []string{"shard oci:s2", "linux/arm64/v8", "does not ask for"}},
		{"merge checkout modified", []Shard{s1, s2}, shardJobs(commit, true, amd64, arm64), []string{"clean checkout"}},
		{"no git", []Shard{s1, s2}, shardJobs("", false, amd64, arm64), []string{"git checkout"}},
		{"given twice", []Shard{s1, s1, s2}, jobs, []string{"oci:s1 is given twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenShards(tc.shards, tc.jobs, testID)
			if err == nil {
				t.Fatal("merged")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}

	// A layout without shard records (slipway run writes none).
	plain := filepath.Join(tmp, "plain")
	l, err := publish.NewLayout(plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), jobs, Stages{Builder: b, ResolveBase: scratchResolver, Destination: &LayoutDestination{Layout: l, Dir: plain}}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenShards([]Shard{{Name: "oci:plain", Dir: plain}}, jobs, testID); err == nil || !strings.Contains(err.Error(), "no shard record") {
		t.Fatalf("layout without records: %v", err)
	}
}

// A shard whose index annotations differ from the merge's (another
// SOURCE_DATE_EPOCH) is refused when its target is assembled.
func TestMergeShardsAnnotations(t *testing.T) {
	b := &platformBuilder{imgs: map[string]v1.Image{}}
	tmp := t.TempDir()
	const commit = "0123456789abcdef0123456789abcdef01234567"
	writeShard(t, b, filepath.Join(tmp, "s1"), testID, shardJobs(commit, false, amd64))
	late := shardJobs(commit, false, arm64)
	for i := range late {
		late[i].Target.Created = time.Unix(1800000000, 0)
	}
	writeShard(t, b, filepath.Join(tmp, "s2"), testID, late)
	jobs := shardJobs(commit, false, amd64, arm64)
	s, err := OpenShards([]Shard{{Name: "oci:s1", Dir: filepath.Join(tmp, "s1")}, {Name: "oci:s2", Dir: filepath.Join(tmp, "s2")}}, jobs, testID)
	if err != nil {
		t.Fatal(err)
	}
	j := jobs[0]
	j.Target.ResolveBase = func(ctx context.Context) (*build.Base, error) { return s.ResolveBase(ctx, j.BaseRef) }
	_, err = s.Build(context.Background(), j.Target)
	if err == nil || !strings.Contains(err.Error(), "shard oci:s2") || !strings.Contains(err.Error(), build.AnnotationCreated) {
		t.Fatalf("err = %v, want shard oci:s2 refused for its created annotation", err)
	}
}

// A blob changed in a shard fails the merge, naming the shard.
func TestMergeShardsTamperedBlob(t *testing.T) {
	b := &platformBuilder{imgs: map[string]v1.Image{}}
	tmp := t.TempDir()
	const commit = "0123456789abcdef0123456789abcdef01234567"
	writeShard(t, b, filepath.Join(tmp, "s1"), testID, shardJobs(commit, false, amd64))
	writeShard(t, b, filepath.Join(tmp, "s2"), testID, shardJobs(commit, false, arm64))
	img := b.imgs["hello linux/arm64"]
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(tmp, "s2", "blobs", d.Algorithm, d.Hex)
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	jobs := shardJobs(commit, false, amd64, arm64)
	s, err := OpenShards([]Shard{{Name: "oci:s1", Dir: filepath.Join(tmp, "s1")}, {Name: "oci:s2", Dir: filepath.Join(tmp, "s2")}}, jobs, testID)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), jobs, Stages{Builder: s, ResolveBase: s.ResolveBase}, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "shard oci:s2: hello for linux/arm64") {
		t.Fatalf("err = %v, want the tampered shard named", err)
	}
	if res.Targets[1].Error != "" {
		t.Fatalf("worker is intact, yet: %s", res.Targets[1].Error)
	}
}
