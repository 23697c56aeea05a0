package kms_test

import (
	"slices"
	"testing"

	"github.com/slipway-build/slipway/sign"
	_ "github.com/slipway-build/slipway/sign/kms"
)

// TestProvidersRegistered checks that importing the package registers every
// provider. It calls no KMS.
func TestProvidersRegistered(t *testing.T) {
	got := sign.KMSSchemes()
	for _, want := range []string{"awskms://", "azurekms://", "gcpkms://", "hashivault://"} {
		if !slices.Contains(got, want) {
			t.Errorf("KMS schemes %q lack %s", got, want)
		}
	}
}
