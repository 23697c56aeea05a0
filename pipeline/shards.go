package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/publish"
)

// AnnotationShard is the annotation, on a target's entries in the
// index.json of a layout written by slipway build, that holds the
// target's ShardRecord as JSON: what a merge (run --from) checks.
const AnnotationShard = "dev.slipway.shard"

// ShardIdentity is what the shards of one merge and the merge itself must
// share besides the source revision.
type ShardIdentity struct {
	// Slipway is slipway's version.
	Slipway string `json:"slipway"`
	// Config is the digest of the config file's bytes (sha256:…).
	Config string `json:"config"`
}

// ConfigDigest is the Config of a ShardIdentity: the digest of the config
// file as read.
func ConfigDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ShardRecord is what a shard build records about one target.
type ShardRecord struct {
	ShardIdentity
	// Revision and Dirty describe the source checkout (Job.Git).
	Revision string `json:"revision"`
	Dirty    bool   `json:"dirty"`
	// Target is the target's name.
	Target string `json:"target"`
	// Base is the base the shard built on, resolved.
	Base ShardBase `json:"base"`
	// Platforms are the platforms the shard built, in its order.
	Platforms []ShardPlatform `json:"platforms"`
}

// ShardBase is a resolved base (build.Base without its content).
type ShardBase struct {
	Name      string `json:"name"`
	Ref       string `json:"ref,omitempty"`
	Digest    string `json:"digest,omitempty"`
	MediaType string `json:"mediaType"`
}

// ShardPlatform is one platform image of a shard.
type ShardPlatform struct {
	Platform   string `json:"platform"`
	Digest     string `json:"digest"`
	BaseDigest string `json:"baseDigest,omitempty"`
	BinarySize int64  `json:"binarySize"`
}

// newShardRecord describes b. The base's Ref is the one annotated on the
// index (OCI; a Docker index has no annotations and assembles without it),
// its media type says only OCI or Docker, the one thing assembly reads.
func newShardRecord(id ShardIdentity, j Job, b *build.Result) (ShardRecord, error) {
	r := ShardRecord{ShardIdentity: id, Revision: j.Git.Commit, Dirty: j.Git.Dirty, Target: j.Target.Name,
		Base: ShardBase{Name: b.Base.Name, Digest: b.Base.Digest, MediaType: string(types.OCIImageIndex)}}
	im, err := b.Index.IndexManifest()
	if err != nil {
		return r, err
	}
	if im.MediaType == types.DockerManifestList {
		r.Base.MediaType = string(types.DockerManifestList)
	}
	r.Base.Ref = im.Annotations[build.AnnotationBaseName]
	for _, pi := range b.Images {
		r.Platforms = append(r.Platforms, ShardPlatform{Platform: platformKey(pi.Platform), Digest: pi.Digest.String(),
			BaseDigest: pi.BaseDigest, BinarySize: pi.BinarySize})
	}
	return r, nil
}

// platformKey names a platform in shard records and merges: os/arch[/variant],
// with arm64's default variant v8 spelled out (as the index does).
func platformKey(p v1.Platform) string {
	if p.Architecture == "arm64" && p.Variant == "" {
		p.Variant = "v8"
	}
	return build.PlatformString(v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
}

// shardRecorder is a layout or archive destination whose target entries
// carry their ShardRecord (see RecordShards).
type shardRecorder struct {
	Destination
	layout *LayoutDestination
	id     ShardIdentity
}

// RecordShards wraps d, a *LayoutDestination or *ArchiveDestination, so
// that each target it writes records its ShardRecord (AnnotationShard) in
// the layout's index.json, after its tags.
func RecordShards(d Destination, id ShardIdentity) (Destination, error) {
	switch x := d.(type) {
	case *LayoutDestination:
		return &shardRecorder{Destination: d, layout: x, id: id}, nil
	case *ArchiveDestination:
		return &shardRecorder{Destination: d, layout: x.layout, id: id}, nil
	}
	return nil, fmt.Errorf("shard records are written to OCI layouts and archives only, not %T", d)
}

// Tag implements Destination: the tags, then the record on every entry of
// the target.
func (r *shardRecorder) Tag(ctx context.Context, j Job, b *build.Result) error {
	if err := r.Destination.Tag(ctx, j, b); err != nil {
		return err
	}
	if err := r.record(j, b); err != nil {
		return fmt.Errorf("recording shard of %s: %w", j.Target.Name, err)
	}
	return nil
}

// record puts j's ShardRecord on every entry of its target.
func (r *shardRecorder) record(j Job, b *build.Result) error {
	rec, err := newShardRecord(r.id, j, b)
	if err != nil {
		return err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	r.layout.mu.Lock()
	defer r.layout.mu.Unlock()
	p := r.layout.Layout.Path()
	root, err := p.ImageIndex()
	if err != nil {
		return err
	}
	im, err := root.IndexManifest()
	if err != nil {
		return err
	}
	mine := func(d v1.Descriptor) bool {
		return d.Annotations[publish.AnnotationTarget] == j.Target.Name && d.Annotations[publish.AnnotationKind] == publish.KindImage
	}
	var entries []v1.Descriptor
	for _, d := range im.Manifests {
		if mine(d) {
			d.Annotations = maps.Clone(d.Annotations)
			d.Annotations[AnnotationShard] = string(data)
			entries = append(entries, d)
		}
	}
	if err := p.RemoveDescriptors(mine); err != nil {
		return err
	}
	for _, d := range entries {
		if err := p.AppendDescriptor(d); err != nil {
			return err
		}
	}
	return nil
}

// Shard is one shard given to a merge: a layout directory (an archive is
// unpacked, and its blobs checked, by the caller).
type Shard struct {
	// Name is the shard as given (oci:DIR, oci-archive:FILE), for errors.
	Name string
	// Dir is the layout's directory.
	Dir string
}

// Shards are the shards of a merge, opened and checked against its jobs:
// they are the merge's build stage (Build) and base resolver
// (ResolveBase), so pipeline.Run scans, gates, signs and writes the
// merged indexes as it does a build's.
type Shards struct {
	targets map[string]*shardTarget
	bases   map[string]*build.Base // by the jobs' BaseRef
}

var _ build.Builder = (*Shards)(nil)

// shardTarget is where each platform of one target comes from.
type shardTarget struct {
	base      *build.Base
	baseFrom  string                   // the shard base came from, for errors
	platforms map[string]*shardImage   // by platformKey
	indexes   map[string]v1.ImageIndex // each shard's index of the target, by shard name
	indexMT   map[string]types.MediaType
	want      map[string]bool // the platforms the config asks for
}

type shardImage struct {
	shard  string
	root   v1.ImageIndex
	desc   v1.Descriptor
	record ShardPlatform
}

// OpenShards reads the shards and checks, before anything is built or
// written, that they can be merged into jobs: every shard records the
// same slipway version and config (id) and the commit of the merge's own
// clean checkout; each target was built on one base; every platform the
// config asks for is in exactly one shard, and no shard has a platform it
// does not ask for. Errors name the shard.
func OpenShards(shards []Shard, jobs []Job, id ShardIdentity) (*Shards, error) {
	if len(shards) == 0 {
		return nil, fmt.Errorf("no shards to merge")
	}
	s := &Shards{targets: map[string]*shardTarget{}, bases: map[string]*build.Base{}}
	jobOf := map[string]*Job{}
	for i := range jobs {
		j := &jobs[i]
		if j.Target.AllPlatforms {
			return nil, &ConfigError{Key: "platforms", Msg: fmt.Sprintf("target %s: platforms: %s cannot be merged from shards (list the platforms)", j.Target.Name, build.AllPlatforms)}
		}
		if j.Git.Commit == "" {
			return nil, fmt.Errorf("merging shards needs a git checkout: %s is not in one, and the commit is what shows that shards share their source", j.Target.Dir)
		}
		if j.Git.Dirty {
			return nil, fmt.Errorf("merging shards needs a clean checkout: %s has uncommitted changes (shards can only be shown to share a source at a commit)", j.Target.Dir)
		}
		jobOf[j.Target.Name] = j
		st := &shardTarget{platforms: map[string]*shardImage{}, indexes: map[string]v1.ImageIndex{}, indexMT: map[string]types.MediaType{}, want: map[string]bool{}}
		for _, p := range j.Target.Platforms {
			st.want[platformKey(p)] = true
		}
		s.targets[j.Target.Name] = st
	}
	seenName := map[string]bool{}
	for _, sh := range shards {
		if seenName[sh.Name] {
			return nil, fmt.Errorf("shard %s is given twice", sh.Name)
		}
		seenName[sh.Name] = true
		if err := s.add(sh, jobOf, id); err != nil {
			return nil, err
		}
	}
	for _, j := range jobs {
		st := s.targets[j.Target.Name]
		for _, p := range j.Target.Platforms {
			if st.platforms[platformKey(p)] == nil {
				return nil, fmt.Errorf("no shard has target %s for platform %s", j.Target.Name, build.PlatformString(p))
			}
		}
		if b, ok := s.bases[j.BaseRef]; ok && !sameBase(b, st.base) {
			return nil, fmt.Errorf("shards built targets on base %s from two digests (%s, %s): build the shards again", j.BaseRef, b.Digest, st.base.Digest)
		}
		s.bases[j.BaseRef] = st.base
	}
	return s, nil
}

func sameBase(a, b *build.Base) bool {
	return a.Name == b.Name && a.Ref == b.Ref && a.Digest == b.Digest && a.MediaType == b.MediaType
}

// add reads one shard's targets.
func (s *Shards) add(sh Shard, jobOf map[string]*Job, id ShardIdentity) error {
	p, err := layout.FromPath(sh.Dir)
	if err != nil {
		return fmt.Errorf("shard %s: %w", sh.Name, err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		return fmt.Errorf("shard %s: %w", sh.Name, err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return fmt.Errorf("shard %s: %w", sh.Name, err)
	}
	done := map[string]bool{}
	found := false
	for _, desc := range im.Manifests {
		if desc.Annotations[publish.AnnotationKind] != publish.KindImage {
			continue
		}
		found = true
		target := desc.Annotations[publish.AnnotationTarget]
		j := jobOf[target]
		if j == nil || done[target] {
			continue // not merged now, or another tag of the same index
		}
		done[target] = true
		raw := desc.Annotations[AnnotationShard]
		if raw == "" {
			return fmt.Errorf("shard %s: target %s has no shard record (%s): make shards with slipway build", sh.Name, target, AnnotationShard)
		}
		var rec ShardRecord
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			return fmt.Errorf("shard %s: target %s: reading its shard record: %w", sh.Name, target, err)
		}
		if err := checkShardRecord(sh.Name, rec, *j, id); err != nil {
			return err
		}
		if err := s.addTarget(sh, root, desc, rec); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("shard %s: no image built by slipway in it", sh.Name)
	}
	return nil
}

// checkShardRecord compares what a shard recorded with the merge's own
// job and identity.
func checkShardRecord(name string, rec ShardRecord, j Job, id ShardIdentity) error {
	switch {
	case rec.Target != j.Target.Name:
		return fmt.Errorf("shard %s: the entry of target %s records target %q", name, j.Target.Name, rec.Target)
	case rec.Slipway != id.Slipway:
		return fmt.Errorf("shard %s was built by slipway %s, this is slipway %s", name, rec.Slipway, id.Slipway)
	case rec.Config != id.Config:
		return fmt.Errorf("shard %s was built with another config file (%s; this one is %s)", name, rec.Config, id.Config)
	case rec.Dirty:
		return fmt.Errorf("shard %s was built from a modified checkout of %s (uncommitted changes): shards can only be shown to share a source at a commit", name, short(rec.Revision))
	case rec.Revision != j.Git.Commit:
		return fmt.Errorf("shard %s was built from commit %s, this checkout is at %s", name, short(rec.Revision), short(j.Git.Commit))
	}
	return nil
}

func short(commit string) string {
	if commit == "" {
		return "(no commit)"
	}
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// addTarget places the platforms of one target's index in a shard,
// checking the index against its digest and the shard's record.
func (s *Shards) addTarget(sh Shard, root v1.ImageIndex, desc v1.Descriptor, rec ShardRecord) error {
	st := s.targets[rec.Target]
	if !desc.MediaType.IsIndex() {
		return fmt.Errorf("shard %s: the entry of %s is %s, not an index", sh.Name, rec.Target, desc.MediaType)
	}
	idx, err := root.ImageIndex(desc.Digest)
	if err != nil {
		return fmt.Errorf("shard %s: reading %s: %w", sh.Name, rec.Target, err)
	}
	if err := checkRaw(idx.RawManifest, desc.Digest); err != nil {
		return fmt.Errorf("shard %s: index of %s: %w", sh.Name, rec.Target, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("shard %s: reading %s: %w", sh.Name, rec.Target, err)
	}
	base := &build.Base{Name: rec.Base.Name, Ref: rec.Base.Ref, MediaType: types.MediaType(rec.Base.MediaType)}
	if rec.Base.Digest != "" {
		if base.Digest, err = v1.NewHash(rec.Base.Digest); err != nil {
			return fmt.Errorf("shard %s: base of %s: %w", sh.Name, rec.Target, err)
		}
	}
	if st.base == nil {
		st.base, st.baseFrom = base, sh.Name
	} else if !sameBase(st.base, base) {
		return fmt.Errorf("shard %s built %s on base %s@%s, shard %s on %s@%s", sh.Name, rec.Target, base.Name, base.Digest, st.baseFrom, st.base.Name, st.base.Digest)
	}
	if len(im.Manifests) != len(rec.Platforms) {
		return fmt.Errorf("shard %s: index of %s has %d manifests, its record %d platforms", sh.Name, rec.Target, len(im.Manifests), len(rec.Platforms))
	}
	for i, m := range im.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			return fmt.Errorf("shard %s: index of %s: entry %d (%s) is not a platform image", sh.Name, rec.Target, i, m.Digest)
		}
		key, r := platformKey(*m.Platform), rec.Platforms[i]
		if r.Platform != key || r.Digest != m.Digest.String() {
			return fmt.Errorf("shard %s: index of %s has %s %s, its record %s %s", sh.Name, rec.Target, key, m.Digest, r.Platform, r.Digest)
		}
		if !st.want[key] {
			return fmt.Errorf("shard %s has target %s for platform %s, which the config does not ask for", sh.Name, rec.Target, key)
		}
		if prev := st.platforms[key]; prev != nil {
			return fmt.Errorf("platform %s of target %s is in two shards: %s and %s", key, rec.Target, prev.shard, sh.Name)
		}
		st.platforms[key] = &shardImage{shard: sh.Name, root: idx, desc: m, record: r}
	}
	st.indexes[sh.Name] = idx
	st.indexMT[sh.Name] = desc.MediaType
	return nil
}

// checkRaw fails unless raw hashes to want.
func checkRaw(raw func() ([]byte, error), want v1.Hash) error {
	b, err := raw()
	if err != nil {
		return err
	}
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("manifest %s does not match its digest (it hashes to %s)", want, got)
	}
	return nil
}

// ResolveBase is the merge's BaseResolver: the base the shards recorded
// (the merge resolves nothing; base_policy was checked where the shards
// were built).
func (s *Shards) ResolveBase(_ context.Context, ref string) (*build.Base, error) {
	b, ok := s.bases[ref]
	if !ok {
		return nil, fmt.Errorf("no shard records base %s", ref)
	}
	return b, nil
}

// Build implements build.Builder: t's index assembled from the shards'
// platform images (build.Assemble, in the order of t.Platforms, on the
// recorded base), each image's blobs checked against their digests. It
// fails, naming the shard, unless every shard's own index of t carries the
// annotations the merged one has (created time, revision, source, base…).
func (s *Shards) Build(ctx context.Context, t build.Target) (*build.Result, error) {
	st := s.targets[t.Name]
	if st == nil {
		return nil, fmt.Errorf("no shard has target %s", t.Name)
	}
	base := st.base
	if t.Base == nil && t.ResolveBase != nil {
		b, err := t.ResolveBase(ctx)
		if err != nil {
			return nil, err
		}
		base = b
	}
	imgs := make([]build.PlatformImage, 0, len(t.Platforms))
	for _, p := range t.Platforms {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		key := platformKey(p)
		si := st.platforms[key]
		if si == nil {
			return nil, fmt.Errorf("no shard has target %s for platform %s", t.Name, key)
		}
		img, err := si.root.Image(si.desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("shard %s: %s for %s: %w", si.shard, t.Name, key, err)
		}
		if err := checkRaw(img.RawManifest, si.desc.Digest); err != nil {
			return nil, fmt.Errorf("shard %s: %s for %s: %w", si.shard, t.Name, key, err)
		}
		// Every blob (config, layers compressed and not) against its digest.
		if err := validate.Image(img); err != nil {
			return nil, fmt.Errorf("shard %s: %s for %s: %w", si.shard, t.Name, key, err)
		}
		imgs = append(imgs, build.PlatformImage{Platform: p, Image: img, Digest: si.desc.Digest, BaseDigest: si.record.BaseDigest, BinarySize: si.record.BinarySize})
	}
	tb := t
	tb.Base = base
	res, err := build.Assemble(tb, imgs)
	if err != nil {
		return nil, err
	}
	mt, err := res.Index.MediaType()
	if err != nil {
		return nil, err
	}
	merged, err := res.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(st.indexes))
	for _, name := range names {
		if st.indexMT[name] != mt {
			return nil, fmt.Errorf("shard %s: index of %s is %s, the merged one %s", name, t.Name, st.indexMT[name], mt)
		}
		im, err := st.indexes[name].IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", name, err)
		}
		if k, ok := firstDifference(merged.Annotations, im.Annotations); ok {
			return nil, fmt.Errorf("shard %s: index of %s has annotation %s = %q, the merge %q (built from another source, config or SOURCE_DATE_EPOCH)", name, t.Name, k, im.Annotations[k], merged.Annotations[k])
		}
	}
	return res, nil
}

// firstDifference is the first key (sorted) whose value differs in a and b.
func firstDifference(a, b map[string]string) (string, bool) {
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		va, oka := a[k]
		vb, okb := b[k]
		if va != vb || oka != okb {
			return k, true
		}
	}
	return "", false
}
