package pipeline

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// CheckTargetName checks a target name, from the config or from an OCI
// layout's index.json: one lowercase image name component, so that
// <repository>/<name> cannot reach another repository ("../x", "a/b").
func CheckTargetName(s string) error {
	if s == "" {
		return fmt.Errorf("empty target name")
	}
	if !targetName.MatchString(s) {
		return fmt.Errorf("%q is not a valid image name component (lowercase letters, digits, . _ -)", s)
	}
	return nil
}

// signatureTagSuffixes are the tag suffixes cosign uses for signatures,
// attestations and attached SBOMs.
var signatureTagSuffixes = []string{".sig", ".att", ".sbom"}

// CheckTag checks a tag, from the config or from an OCI layout's
// index.json: a valid OCI tag that does not look like a signature,
// attestation or referrers tag (sha256-…, *.sig, *.att, *.sbom). Such a
// tag would overwrite, or stand in for, the signatures that verifiers
// look up by the digest they verify.
func CheckTag(tag string) error {
	if tag == "" {
		return fmt.Errorf("\"\" is not a valid tag: it is empty")
	}
	if _, err := name.NewTag("example.com/x:"+tag, name.StrictValidation); err != nil {
		return fmt.Errorf("%q is not a valid tag", tag)
	}
	lower := strings.ToLower(tag)
	looks := strings.HasPrefix(lower, "sha256-") || strings.HasPrefix(lower, "sha512-")
	for _, s := range signatureTagSuffixes {
		looks = looks || strings.HasSuffix(lower, s)
	}
	if looks {
		return fmt.Errorf("%q looks like a signature tag (sha256-…, *.sig, *.att, *.sbom are where cosign keeps signatures, attestations and referrers); choose another tag", tag)
	}
	return nil
}
