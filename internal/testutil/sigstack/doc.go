// Package sigstack starts a local Sigstore stack for tests: an OpenID
// Connect issuer served in-process, Fulcio and the timestamp authority
// (peer binaries), a trusted root and a signing config naming them.
package sigstack
