package build

import (
	"context"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Builder turns a Target into a locally assembled image index.
type Builder interface {
	// Build compiles the target for each of its platforms and assembles the
	// image index. Nothing is pushed.
	Build(ctx context.Context, t Target) (*Result, error)
}

// Target is one Go main package to build into a multi-platform image. All
// values are final: templates have been expanded by the caller.
type Target struct {
	// Name names the target; it is the last path element of its repository.
	Name string
	// Dir is the directory of the Go module to build in.
	Dir string
	// Main is the main package, relative to Dir (e.g. "./cmd/hello").
	Main string
	// Platforms are the platforms to build, e.g. linux/amd64.
	Platforms []v1.Platform
	// Ldflags are appended after "-s -w".
	Ldflags []string
	// Flags are extra `go build` flags (e.g. "-tags=netgo").
	Flags []string
	// Env are extra environment variables for `go build` (KEY=VALUE).
	Env []string
	// SecretEnv names variables kept out of the `go build` environment, in
	// addition to SecretEnv (e.g. the variable holding the signing key).
	SecretEnv []string
	// Base is the resolved base image.
	Base *Base
	// ResolveBase, when Base is nil, gives the base. Build calls it beside
	// the compiles, which do not need it (only the image assembly does), so
	// a slow registry does not delay them; its error cancels them.
	ResolveBase func(context.Context) (*Base, error)
	// Image configures the image's runtime config and metadata.
	Image ImageConfig
	// Files are copied into the image, in one layer with the main
	// package's kodata directory (ko's convention: copied to KoDataPath,
	// with KO_DATA_PATH set), before the binary's layer.
	Files []File
	// Created is the timestamp recorded in configs, annotations and tar
	// entries. A zero value means the Unix epoch.
	Created time.Time
	// Source, Revision and Version fill the org.opencontainers.image.source,
	// .revision and .version annotations when set.
	Source, Revision, Version string
	// Dirty is whether the caller found the checkout modified (what
	// templates and provenance say). A binary that go build stamped with
	// another revision or modified flag fails the build: the tree changed
	// while slipway was building, and they would disagree.
	Dirty bool

	// AllPlatforms, when set, means Platforms are to be every linux
	// platform of Base (Base.LinuxPlatforms), filled in once it is resolved.
	AllPlatforms bool

	// listed is CheckMain's go list output, for the binary cache key.
	listed *listing
	// vcs is the checkout's state as -buildvcs stamps it (vcsState),
	// asked of git once per Build for all its platforms.
	vcs func() string
}

// ImageConfig is the runtime configuration and metadata of an image.
type ImageConfig struct {
	// User defaults to DefaultUser.
	User string
	// Env is added to the base image's environment (sorted by key).
	Env map[string]string
	// Ports are exposed TCP ports ("8080" or "8080/udp").
	Ports []string
	// Labels are set in the image config.
	Labels map[string]string
	// Annotations are set on every manifest and on the index.
	Annotations map[string]string
	// Workdir is the working directory; default "/".
	Workdir string
	// Args are passed to the entrypoint (the image's Cmd).
	Args []string
	// Healthcheck, when set, is the image config's Healthcheck. Its Test
	// is written as given (e.g. ["CMD", "/app/hello", "-health"]).
	Healthcheck *v1.HealthConfig
	// Scratch chooses the runtime files added on the scratch base (ignored
	// on other bases).
	Scratch ScratchFiles
}

// DefaultUser is the user images run as unless configured: the conventional
// non-root "nonroot" uid/gid of distroless images.
const DefaultUser = "65532:65532"

// AppDir is where the binary lives in the image: AppDir/<target name>.
const AppDir = "/app"

// Result is a built target.
type Result struct {
	// Target is the target's name.
	Target string
	// Index is the assembled multi-platform image index.
	Index v1.ImageIndex
	// Digest is the digest of Index.
	Digest v1.Hash
	// Base describes the base image used.
	Base BaseInfo
	// Images holds one entry per platform, in the order of Target.Platforms.
	Images []PlatformImage
}

// PlatformImage is the image built for one platform.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
	Digest   v1.Hash
	// BaseDigest is the digest of the base manifest used for this platform
	// (empty for scratch).
	BaseDigest string
	// BinarySize is the size in bytes of the Go binary.
	BinarySize int64
	// Cached is true when the binary came from the binary cache.
	Cached bool
}

// BaseInfo identifies the base image a result was built on.
type BaseInfo struct {
	// Name is the base as configured ("scratch", a reference, or oci:DIR).
	Name string `json:"name"`
	// Digest is the resolved digest of the base (index or image); empty for
	// scratch.
	Digest string `json:"digest,omitempty"`
}
