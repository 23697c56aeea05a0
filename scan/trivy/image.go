package trivy

import (
	"fmt"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// memImage presents a ggcr image, however it is backed (memory, OCI
// layout, lazily fetched), as Trivy's image type. Trivy reads layers
// through v1.Image, so nothing is written to disk or pulled.
type memImage struct {
	v1.Image
	name string
}

var _ ftypes.Image = (*memImage)(nil)

// Name is what Trivy shows as the artifact name.
func (m *memImage) Name() string { return m.name }

// ID is the image ID: the config digest, as Docker and Trivy define it.
func (m *memImage) ID() (string, error) {
	h, err := m.ConfigName()
	if err != nil {
		return "", fmt.Errorf("config digest: %w", err)
	}
	return h.String(), nil
}

// RepoTags is empty: a locally assembled image has no tags yet.
func (m *memImage) RepoTags() []string { return nil }

// RepoDigests is empty: a locally assembled image is not in a repository.
func (m *memImage) RepoDigests() []string { return nil }
