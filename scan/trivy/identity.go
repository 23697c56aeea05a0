package trivy

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/slipway-build/slipway"
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
	id := fmt.Sprintf("trivy %s; db schema %d updated %s", s.version, st.SchemaVersion, st.UpdatedAt.UTC().Format(time.RFC3339Nano))
	if s.remote != nil {
		id += "; server " + s.remote.shown // another detector than the local one
	}
	return id, nil
}

// Version is the version of Trivy linked into this binary, from its build
// info; test binaries record no dependencies, so there it is the version
// slipway's go.mod selects, which is the one they link.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == TrivyModule {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return slipway.Requirement(TrivyModule)
}
