package sign

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

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
	if (i.Issuer == "") == (i.IssuerRegexp == "") {
		return errors.New("give exactly one of issuer and issuer_regexp")
	}
	if (i.Subject == "") == (i.SubjectRegexp == "") {
		return errors.New("give exactly one of subject and subject_regexp")
	}
	for _, r := range []struct{ name, re string }{{"issuer_regexp", i.IssuerRegexp}, {"subject_regexp", i.SubjectRegexp}} {
		if r.re == "" {
			continue
		}
		if !strings.HasPrefix(r.re, "^") || !strings.HasSuffix(r.re, "$") || strings.HasSuffix(r.re, `\$`) {
			return fmt.Errorf("%s %q must be anchored: start with ^ and end with $", r.name, r.re)
		}
		if _, err := regexp.Compile(r.re); err != nil {
			return fmt.Errorf("%s %q: %w", r.name, r.re, err)
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
