// Package kms links sigstore's cloud KMS signers into a binary, so that
// sign.LoadPrivateKeyContext and sign.LoadPublicKeysContext accept their
// references. Import it for its side effects, from main only:
//
//	import _ "github.com/slipway-build/slipway/sign/kms"
//
// Providers (all build offline from the module cache; each calls its cloud
// API, so none is exercised by slipway's tests):
//
//	awskms://[ENDPOINT]/{KEY_ID | alias/ALIAS | ARN}   AWS KMS
//	gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/V]
//	azurekms://VAULT.vault.azure.net/KEY               Azure Key Vault
//	hashivault://KEY                                   HashiCorp Vault transit
//
// Credentials come from each SDK's usual environment (AWS_*, Google ADC,
// AZURE_*, VAULT_ADDR/VAULT_TOKEN). sigstore's fallback of executing a
// "sigstore-kms-<scheme>" plugin from PATH is never used by slipway.
package kms

import (
	// Each registers its reference scheme with sigstore's kms package.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)
