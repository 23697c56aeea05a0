// Package fakes holds in-memory implementations of slipway's stage
// interfaces for tests of the pipeline driver: no compiler, no DB, no keys,
// no registry.
package fakes

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/scan"
)

// Builder returns a random index per target, or the error set for it.
type Builder struct {
	Errs map[string]error

	mu      sync.Mutex
	Builds  map[string]int
	digests map[v1.Hash]string
}

// TargetOf returns the target a built digest belongs to.
func (b *Builder) TargetOf(d v1.Hash) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.digests[d]
}

var _ build.Builder = (*Builder)(nil)

// Build implements build.Builder.
func (b *Builder) Build(ctx context.Context, t build.Target) (*build.Result, error) {
	if t.Base == nil && t.ResolveBase != nil {
		if _, err := t.ResolveBase(ctx); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	if b.Builds == nil {
		b.Builds = map[string]int{}
	}
	b.Builds[t.Name]++
	b.mu.Unlock()
	if err := b.Errs[t.Name]; err != nil {
		return nil, err
	}
	idx, err := random.Index(64, 1, int64(len(t.Platforms)))
	if err != nil {
		return nil, err
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.digests == nil {
		b.digests = map[v1.Hash]string{}
	}
	b.digests[d] = t.Name
	b.mu.Unlock()
	return &build.Result{Target: t.Name, Index: idx, Digest: d}, nil
}

// Scanner reports, for an index the Builder made, the findings set for
// its target.
type Scanner struct {
	Builder  *Builder
	Findings map[string][]scan.Finding // by target name
	Err      error
	DBErr    error // the DB is unusable: DBIdentity and Scan fail
}

var (
	_ scan.Scanner      = (*Scanner)(nil)
	_ scan.DBIdentifier = (*Scanner)(nil)
)

// DBIdentity implements scan.DBIdentifier.
func (s *Scanner) DBIdentity() (string, error) {
	if s.DBErr != nil {
		return "", s.DBErr
	}
	return "fake-db-1", nil
}

// Scan implements scan.Scanner.
func (s *Scanner) Scan(_ context.Context, idx v1.ImageIndex) (*scan.Report, error) {
	if s.DBErr != nil {
		return nil, s.DBErr
	}
	if s.Err != nil {
		return nil, s.Err
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	return &scan.Report{Subject: d.String(), Findings: append([]scan.Finding(nil), s.Findings[s.Builder.TargetOf(d)]...)}, nil
}

// Signer "signs" by recording the digest.
type Signer struct{ Log *Log }

var _ pipeline.Signer = (*Signer)(nil)

// Sign implements pipeline.Signer.
func (s *Signer) Sign(_ context.Context, j pipeline.Job, res *build.Result, _ *scan.Report) (pipeline.Signatures, error) {
	return &Signatures{target: j.Target.Name, digest: res.Digest, log: s.Log}, nil
}

// Signatures are fake signatures that log their writes.
type Signatures struct {
	target string
	digest v1.Hash
	log    *Log
}

// Refs implements pipeline.Signatures.
func (s *Signatures) Refs() []string { return []string{s.target + ":" + s.digest.String() + ".sig"} }

// WriteRemote implements pipeline.Signatures.
func (s *Signatures) WriteRemote(context.Context, name.Repository, http.RoundTripper, ...remote.Option) error {
	s.log.add("signatures " + s.target)
	return nil
}

// WriteLayout implements pipeline.Signatures.
func (s *Signatures) WriteLayout(string) error {
	s.log.add("signatures " + s.target)
	return nil
}

// Log records what was written, in order.
type Log struct {
	mu      sync.Mutex
	Entries []string
}

func (l *Log) add(s string) {
	l.mu.Lock()
	l.Entries = append(l.Entries, s)
	l.mu.Unlock()
}

// Destination records writes; CheckErr fails the preflight, WriteErr the
// image write of the named target.
type Destination struct {
	Log      *Log
	CheckErr error
	WriteErr map[string]error
}

var (
	_ pipeline.Destination = (*Destination)(nil)
	_ pipeline.Checker     = (*Destination)(nil)
)

// Check implements pipeline.Checker.
func (d *Destination) Check(context.Context, pipeline.Job) error { return d.CheckErr }

// WriteImage implements pipeline.Destination.
func (d *Destination) WriteImage(_ context.Context, j pipeline.Job, res *build.Result) (string, error) {
	if err := d.WriteErr[j.Target.Name]; err != nil {
		return "", err
	}
	d.Log.add("image " + j.Target.Name)
	return fmt.Sprintf("fake/%s@%s", j.Target.Name, res.Digest), nil
}

// WriteSignatures implements pipeline.Destination.
func (d *Destination) WriteSignatures(ctx context.Context, j pipeline.Job, _ *build.Result, s pipeline.Signatures) error {
	return s.WriteRemote(ctx, j.Repository, nil)
}

// Tag implements pipeline.Destination.
func (d *Destination) Tag(_ context.Context, j pipeline.Job, _ *build.Result) error {
	d.Log.add("tag " + j.Target.Name)
	return nil
}
