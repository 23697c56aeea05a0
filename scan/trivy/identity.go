package trivy

import (
	"fmt"
	"time"

	"github.com/slipway-build/slipway/scan"
)

var _ scan.DBIdentifier = (*Scanner)(nil)

// DBIdentity implements scan.DBIdentifier: the Trivy version and the DB's
// schema and UpdatedAt, after the same checks a scan makes, so a report
// cached under it is only reused with the same DB.
func (s *Scanner) DBIdentity() (string, error) {
	st, err := s.CheckDB()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("trivy %s; db schema %d updated %s", s.version, st.SchemaVersion, st.UpdatedAt.UTC().Format(time.RFC3339Nano)), nil
}

// TrivyVersion is the version of Trivy linked into this binary.
func TrivyVersion() string { return trivyVersion() }
