package build

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// goosArch lists the GOOS/GOARCH pairs slipway builds images for.
var goosArch = map[string]bool{
	"linux/amd64": true, "linux/arm64": true, "linux/arm": true, "linux/386": true,
	"linux/ppc64le": true, "linux/s390x": true, "linux/riscv64": true,
	"linux/mips64le": true, "linux/loong64": true,
}

// ParsePlatform parses "os/arch[/variant]" and checks that Go can build it
// into an image slipway can assemble: Linux only, since the images are a
// static Linux binary on a Linux base (a windows/amd64 binary on scratch
// cannot start). Variants: arm v5/v6/v7 (GOARM), amd64 v1–v4 (GOAMD64),
// arm64 v8.
func ParsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("parsing platform %q: %w", s, err)
	}
	if strings.Count(s, "/") < 1 || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	if p.OS != "linux" {
		return v1.Platform{}, fmt.Errorf("platform %q: slipway builds Linux images only (the binary must run on the Linux base); use linux/%s, or build %s binaries with go build directly", s, p.Architecture, p.OS)
	}
	if !goosArch[p.OS+"/"+p.Architecture] {
		return v1.Platform{}, fmt.Errorf("platform %q: unsupported os/arch (supported: %s)", s, supportedList())
	}
	if _, err := platformEnv(*p); err != nil {
		return v1.Platform{}, err
	}
	return *p, nil
}

func supportedList() string {
	var l []string
	for k := range goosArch {
		l = append(l, k)
	}
	sortStrings(l)
	return strings.Join(l, ", ")
}

// platformEnv is the GOOS/GOARCH/GOARM/GOAMD64 environment for p.
func platformEnv(p v1.Platform) ([]string, error) {
	env := []string{"GOOS=" + p.OS, "GOARCH=" + p.Architecture}
	switch p.Architecture {
	case "arm":
		switch p.Variant {
		case "":
			// By registry convention a bare linux/arm means v7.
			env = append(env, "GOARM=7")
		case "v5", "v6", "v7":
			env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
		default:
			return nil, fmt.Errorf("platform %s: unknown arm variant %q (want v5, v6 or v7)", platformString(p), p.Variant)
		}
	case "amd64":
		switch p.Variant {
		case "":
		case "v1", "v2", "v3", "v4":
			env = append(env, "GOAMD64="+p.Variant)
		default:
			return nil, fmt.Errorf("platform %s: unknown amd64 variant %q (want v1–v4)", platformString(p), p.Variant)
		}
	case "arm64":
		if p.Variant != "" && p.Variant != "v8" {
			return nil, fmt.Errorf("platform %s: unknown arm64 variant %q (want v8)", platformString(p), p.Variant)
		}
	default:
		if p.Variant != "" {
			return nil, fmt.Errorf("platform %s: %s has no variants", platformString(p), p.Architecture)
		}
	}
	return env, nil
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// PlatformString formats p as os/arch[/variant].
func PlatformString(p v1.Platform) string { return platformString(p) }

// samePlatform reports whether a base image's platform satisfies the
// requested one: os and architecture equal, and the variant equal when the
// request names one (arm64 "v8" and "" are equivalent).
func samePlatform(want, have v1.Platform) bool {
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	wv, hv := want.Variant, have.Variant
	if want.Architecture == "arm64" {
		if wv == "v8" {
			wv = ""
		}
		if hv == "v8" {
			hv = ""
		}
	}
	if want.Architecture == "arm" && wv == "" {
		wv = "v7"
		if hv == "" {
			hv = "v7"
		}
	}
	if want.Architecture == "amd64" {
		// amd64 micro-architecture levels are not distinguished in bases.
		return true
	}
	return wv == hv || (wv == "" && hv != "")
}
