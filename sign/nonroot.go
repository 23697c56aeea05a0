package sign

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RunsAsRoot reports whether an image config user makes the process run
// as root: empty (the default user is root), "root", "0", or either with a
// group ("0:0", "root:staff"). A numeric user is compared as a number
// ("00" is root too).
func RunsAsRoot(user string) bool {
	u, _, _ := strings.Cut(strings.TrimSpace(user), ":")
	if u == "" || u == "root" {
		return true
	}
	n, err := strconv.ParseUint(u, 10, 64)
	return err == nil && n == 0
}

// nonRoot adds a reason for every platform of the verified digest whose
// config would run as root. Configs are read by digest (the manifest
// pins them), children of an index bounded by maxChildManifests.
func (vr *verifier) nonRoot(v *Verdict, desc *remote.Descriptor) error {
	type plat struct {
		name   string
		digest v1.Hash
	}
	var plats []plat
	if desc.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return &denial{fmt.Sprintf("index manifest is unreadable: %v", err)}
		}
		if len(im.Manifests) > maxChildManifests {
			return &denial{fmt.Sprintf("index has %d manifests, more than %d", len(im.Manifests), maxChildManifests)}
		}
		for _, c := range im.Manifests {
			if !c.MediaType.IsImage() {
				continue // attestation manifests and nested indexes run nothing
			}
			name := c.Digest.String()
			if c.Platform != nil {
				name = c.Platform.String()
			}
			plats = append(plats, plat{name, c.Digest})
		}
	} else {
		plats = append(plats, plat{"image", desc.Digest})
	}
	if len(plats) == 0 {
		v.Reasons = append(v.Reasons, "no runnable image to check the user of (require non-root)")
		return nil
	}
	for _, p := range plats {
		img, err := remote.Image(vr.digest.Context().Digest(p.digest.String()), vr.ropts...)
		if err != nil {
			return fmt.Errorf("reading %s manifest: %w", p.name, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return fmt.Errorf("reading %s config: %w", p.name, err)
		}
		if RunsAsRoot(cf.Config.User) {
			v.Reasons = append(v.Reasons, fmt.Sprintf("%s runs as root (config user %q; require non-root)", p.name, cf.Config.User))
		}
	}
	return nil
}
