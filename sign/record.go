package sign

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/internal/cachedir"
)

// Record remembers what WriteRemote left at each signature tag (cosign's
// .sig and .att tags, and the referrers tag of registries without the
// referrers API): the digest the tag named after the write, and which
// signer's statements slipway knows it holds. An unchanged rerun then
// confirms each tag with one HEAD instead of reading the signatures back
// (manifests and every layer) to compare them.
//
// The record is a hint, never a verdict: a tag is skipped only when the
// registry still names, at that tag, the very manifest slipway wrote or
// read (digests are content addresses), so anything another writer did
// since, or a missing or damaged record, sends the write down the full
// read-compare-merge path.
type Record struct{ dir string }

// OpenRecord opens (creating it private) the record kept in dir.
func OpenRecord(dir string) (*Record, error) {
	if err := cachedir.Ensure(dir); err != nil {
		return nil, err
	}
	return &Record{dir: dir}, nil
}

// recordEntry is one tag's record.
type recordEntry struct {
	Tag    string   `json:"tag"`
	Digest string   `json:"digest"`
	Holds  []string `json:"holds"`
}

func (r *Record) path(tag name.Tag) string {
	sum := sha256.Sum256([]byte(tag.Name()))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(r.dir, h[:2], h[2:]+".json")
}

// confirmed reports whether tag still names the manifest recorded for it
// and that manifest holds every entry of want (one HEAD request).
func (r *Record) confirmed(tag name.Tag, want []string, ropts []remote.Option) bool {
	if r == nil || len(want) == 0 {
		return false
	}
	b, err := os.ReadFile(r.path(tag))
	if err != nil {
		return false
	}
	var e recordEntry
	if json.Unmarshal(b, &e) != nil || e.Tag != tag.Name() {
		return false
	}
	for _, w := range want {
		if !slices.Contains(e.Holds, w) {
			return false
		}
	}
	desc, err := remote.Head(tag, ropts...)
	if err != nil || desc.Digest.String() != e.Digest {
		return false
	}
	cachedir.Touch(r.path(tag)) // used: kept by cache pruning
	return true
}

// remember records that tag names digest, holding holds.
func (r *Record) remember(tag name.Tag, digest v1.Hash, holds []string) error {
	if r == nil {
		return nil
	}
	b, err := json.Marshal(recordEntry{Tag: tag.Name(), Digest: digest.String(), Holds: holds})
	if err != nil {
		return err
	}
	p := r.path(tag)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("signature record: %w", err)
	}
	if err := atomicfile.WriteBytes(p, 0o600, b); err != nil {
		return fmt.Errorf("signature record: %w", err)
	}
	return nil
}

// held names a signer's statement (or simple-signing payload) in a record.
func held(signer string, payload []byte) string {
	return heldDigest(signer, statementDigest(payload))
}

// heldDigest is held for a statement known by its digest (a bundle's).
func heldDigest(signer string, statement v1.Hash) string {
	return signer + "/" + statement.String()
}
