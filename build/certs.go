package build

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// CACertsPath is where the CA bundle layer puts certificates: the path Go's
// crypto/x509 (and OpenSSL on Debian) reads on Linux.
const CACertsPath = "/etc/ssl/certs/ca-certificates.crt"

// systemCABundles are the build machine's trust stores, first found wins.
var systemCABundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL 7+
	"/etc/ssl/cert.pem",                                 // Alpine, macOS
}

// CABundle reads a PEM bundle of CA certificates: from file when it is
// set, else from the build machine's trust store. It fails unless the file
// holds at least one parseable certificate.
func CABundle(file string) ([]byte, error) {
	candidates := systemCABundles
	if file != "" {
		candidates = []string{file}
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if err != nil {
			if file == "" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading CA certificates: %w", err)
		}
		if n := countCerts(b); n == 0 {
			return nil, fmt.Errorf("reading CA certificates: %s holds no PEM certificate", p)
		}
		return b, nil
	}
	return nil, fmt.Errorf("no CA certificate bundle on this machine (looked in %v); set ca_certificates to a file or to none", systemCABundles)
}

func countCerts(b []byte) int {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return n
		}
		if blk.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(blk.Bytes); err == nil {
				n++
			}
		}
	}
}
