package sign

import (
	"fmt"
	"regexp"

	"github.com/slipway-build/slipway/sign/vocab"

	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

// Identity is a trusted keyless signer: the OIDC issuer and the subject
// (the certificate's SAN: an email, a workflow URI) Fulcio certified.
// Each of issuer and subject is given exactly or as a regular expression,
// which must be anchored (^…$): an unanchored one would match any
// identity that merely contains it.
type Identity struct {
	Issuer        string `json:"issuer,omitempty"`
	Subject       string `json:"subject,omitempty"`
	IssuerRegexp  string `json:"issuerRegexp,omitempty"`
	SubjectRegexp string `json:"subjectRegexp,omitempty"`
}

// String is the identity as the threshold counts it.
func (i Identity) String() string {
	iss, sub := i.Issuer, i.Subject
	if iss == "" {
		iss = "~" + i.IssuerRegexp
	}
	if sub == "" {
		sub = "~" + i.SubjectRegexp
	}
	return iss + " " + sub
}

// Validate checks the identity: one of issuer and issuer regexp, one of
// subject and subject regexp, regexps anchored and compilable.
func (i Identity) Validate() error { return i.validate() }

func (i Identity) validate() error {
	if field, msg := vocab.CheckIdentity(i.Issuer, i.Subject, i.IssuerRegexp, i.SubjectRegexp); msg != "" {
		return fmt.Errorf("%s: %s", field, msg)
	}
	for _, re := range []string{i.IssuerRegexp, i.SubjectRegexp} {
		if _, err := regexp.Compile(wrapAnchored(re)); re != "" && err != nil {
			return fmt.Errorf("regexp %q: %w", re, err)
		}
	}
	return nil
}

// certificateIdentity is the identity as sigstore-go matches it.
// Regexps are wrapped in ^(?:…)$, so an alternation such as "^a|b$" cannot
// match "xb" through its unanchored branch.
func (i Identity) certificateIdentity() (sgverify.CertificateIdentity, error) {
	return sgverify.NewShortCertificateIdentity(i.Issuer, wrapAnchored(i.IssuerRegexp), i.Subject, wrapAnchored(i.SubjectRegexp))
}

func wrapAnchored(re string) string {
	if re == "" {
		return ""
	}
	return "^(?:" + re + ")$"
}
