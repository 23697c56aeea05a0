package sign

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/slipway-build/slipway/build"
)

// fetchedLayer is one layer of a signature or attestation image.
type fetchedLayer struct {
	desc    v1.Descriptor
	payload []byte
}

// fetchLayers reads the image at tag and its layers, bounded. A missing tag
// yields no layers. Registry failures are errors; an image outside the
// bounds is a denial.
func (vr *verifier) fetchLayers(tag name.Tag, what string, mediaType types.MediaType, maxBytes int64) ([]fetchedLayer, error) {
	desc, err := remote.Get(tag, vr.ropts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %s %s: %w", what, tag, err)
	}
	if desc.MediaType.IsIndex() {
		return nil, &denial{fmt.Sprintf("%s tag %s holds an index, not a signature image", what, tag.TagStr())}
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, &denial{fmt.Sprintf("%s image %s is unreadable: %v", what, tag.TagStr(), err)}
	}
	if len(m.Layers) > MaxSignatures {
		return nil, &denial{fmt.Sprintf("%s image %s has %d layers, more than %d", what, tag.TagStr(), len(m.Layers), MaxSignatures)}
	}
	out := make([]fetchedLayer, 0, len(m.Layers))
	for _, l := range m.Layers {
		if l.MediaType != mediaType {
			out = append(out, fetchedLayer{desc: l})
			continue
		}
		if l.Size < 0 || l.Size > maxBytes {
			return nil, &denial{fmt.Sprintf("%s layer %s is %d bytes, more than the %d allowed", what, l.Digest, l.Size, maxBytes)}
		}
		b, err := vr.fetchBlob(l, what)
		if err != nil {
			return nil, err
		}
		out = append(out, fetchedLayer{desc: l, payload: b})
	}
	return out, nil
}

// fetchBlob reads one layer, checking its size and digest.
func (vr *verifier) fetchBlob(l v1.Descriptor, what string) ([]byte, error) {
	layer, err := remote.Layer(vr.digest.Context().Digest(l.Digest.String()), vr.ropts...)
	if err != nil {
		return nil, fmt.Errorf("reading %s layer %s: %w", what, l.Digest, err)
	}
	b, err := readBlob(layer, l)
	if errors.Is(err, errBlobMismatch) {
		return nil, &denial{fmt.Sprintf("%s layer %s does not match its digest or size", what, l.Digest)}
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s layer %s: %w", what, l.Digest, err)
	}
	return b, nil
}

// errBlobMismatch is a blob whose content is not what its descriptor says.
var errBlobMismatch = errors.New("content does not match its descriptor")

// readBlob reads the compressed content of l, never more than desc.Size+1
// bytes, and fails with errBlobMismatch unless it has exactly the size and
// sha256 digest desc gives.
func readBlob(l v1.Layer, desc v1.Descriptor) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if int64(len(b)) != desc.Size || desc.Digest.Algorithm != "sha256" || hex.EncodeToString(sum[:]) != desc.Digest.Hex {
		return nil, errBlobMismatch
	}
	return b, nil
}

// maxChildManifests bounds how many platform manifests are read for base
// annotations.
const maxChildManifests = 64

// readBaseAnnotations collects org.opencontainers.image.base.digest from the
// verified manifest, and for an index from its platform manifests (whose
// digests the index pins).
func (vr *verifier) readBaseAnnotations(desc *remote.Descriptor) error {
	add := func(ann map[string]string, where string) error {
		s, ok := ann[build.AnnotationBaseDigest]
		if !ok {
			return nil
		}
		h, err := v1.NewHash(s)
		if err != nil {
			return &denial{fmt.Sprintf("%s has a malformed %s annotation", where, build.AnnotationBaseDigest)}
		}
		vr.annotationBases = append(vr.annotationBases, h)
		return nil
	}
	if !desc.MediaType.IsIndex() {
		m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return &denial{fmt.Sprintf("image manifest is unreadable: %v", err)}
		}
		return add(m.Annotations, "image manifest")
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return &denial{fmt.Sprintf("index manifest is unreadable: %v", err)}
	}
	if err := add(im.Annotations, "index"); err != nil {
		return err
	}
	if len(im.Manifests) > maxChildManifests {
		return &denial{fmt.Sprintf("index has %d manifests, more than %d", len(im.Manifests), maxChildManifests)}
	}
	for _, c := range im.Manifests {
		if !c.MediaType.IsImage() {
			continue
		}
		cd, err := remote.Get(vr.digest.Context().Digest(c.Digest.String()), vr.ropts...)
		if err != nil {
			return fmt.Errorf("reading platform manifest %s: %w", c.Digest, err)
		}
		m, err := v1.ParseManifest(bytes.NewReader(cd.Manifest))
		if err != nil {
			return &denial{fmt.Sprintf("platform manifest %s is unreadable: %v", c.Digest, err)}
		}
		if err := add(m.Annotations, "platform manifest "+c.Digest.String()); err != nil {
			return err
		}
	}
	return nil
}
