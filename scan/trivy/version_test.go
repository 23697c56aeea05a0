package trivy

import (
	"strings"
	"testing"
)

// TestVersionWithoutDeps: a test binary's build info records no
// dependencies, so Version falls back to go.mod; it is never empty.
func TestVersionWithoutDeps(t *testing.T) {
	if v := Version(); !strings.HasPrefix(v, "v0.") {
		t.Fatalf("Version() = %q, want Trivy's v0.x version", v)
	}
}
