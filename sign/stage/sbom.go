package stage

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway-build/slipway/build"
	"github.com/slipway-build/slipway/internal/atomicfile"
	"github.com/slipway-build/slipway/internal/cachedir"
)

// sbom makes the SBOM of res, or reads the one made for the same index
// digest, format and SBOM maker before (see WithSBOMCache).
func (s *Signer) sbom(ctx context.Context, res *build.Result) ([]byte, error) {
	if s.o.sbomCache == "" {
		return s.o.sboms.SBOM(ctx, res.Index, s.o.sbomFormat)
	}
	if err := cachedir.Ensure(s.o.sbomCache); err != nil {
		return nil, err
	}
	path := filepath.Join(s.o.sbomCache, strings.ReplaceAll(res.Digest.String(), ":", "-")+"."+s.o.sbomFormat+"."+s.o.sbomVersion+".json")
	if b, err := os.ReadFile(path); err == nil && json.Valid(b) {
		cachedir.Touch(path) // used: kept by cache pruning
		return b, nil
	}
	doc, err := s.o.sboms.SBOM(ctx, res.Index, s.o.sbomFormat)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(path, 0o644, doc); err != nil {
		s.o.log.Warn("caching SBOM", "err", err)
	}
	return doc, nil
}
