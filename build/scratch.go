package build

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ScratchFiles chooses the runtime files added to images on scratch, which
// otherwise hold only the binary (and the CA bundle). The zero value adds
// none; the pipeline turns all three on by default.
type ScratchFiles struct {
	// Zoneinfo adds the Go toolchain's time zone database, unpacked at
	// ZoneinfoDir, where time.LoadLocation (and TZ=Area/City) finds it.
	Zoneinfo bool
	// Passwd adds /etc/passwd and /etc/group naming root, nobody and
	// nonroot (65532, the default user), and nonroot's home directory
	// /home/nonroot, so that os/user resolves the user.
	Passwd bool
	// Tmp adds /tmp with mode 1777, so that os.TempDir works.
	Tmp bool
}

// Any reports whether any file is chosen.
func (s ScratchFiles) Any() bool { return s.Zoneinfo || s.Passwd || s.Tmp }

// ZoneinfoDir is where the time zone database goes on scratch: the first
// directory Go's time package (and the C library) looks in.
const ZoneinfoDir = "/usr/share/zoneinfo"

// nonrootID is the uid and gid of the user "nonroot" (DefaultUser).
const nonrootID = 65532

const (
	etcPasswd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	etcGroup = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
)

// scratchLayerFiles lists the entries s chooses. zoneinfo is the
// toolchain's zoneinfo.zip (read only when s.Zoneinfo is set).
func scratchLayerFiles(s ScratchFiles, zoneinfo func() ([]byte, error)) ([]layerFile, error) {
	var files []layerFile
	if s.Passwd {
		files = append(files,
			fileFromBytes([]byte(etcPasswd), "/etc/passwd", 0o644),
			fileFromBytes([]byte(etcGroup), "/etc/group", 0o644),
			dirEntry("/home/nonroot", 0o700, nonrootID, nonrootID))
	}
	if s.Tmp {
		files = append(files, dirEntry("/tmp", 0o1777, 0, 0))
	}
	if s.Zoneinfo {
		zb, err := zoneinfo()
		if err != nil {
			return nil, err
		}
		zf, err := zoneinfoFiles(zb)
		if err != nil {
			return nil, err
		}
		files = append(files, zf...)
	}
	return files, nil
}

// zoneinfoFiles unpacks a zoneinfo.zip (as $GOROOT/lib/time has it) into
// layer files under ZoneinfoDir.
func zoneinfoFiles(zb []byte) ([]layerFile, error) {
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		return nil, fmt.Errorf("reading zoneinfo.zip: %w", err)
	}
	var files []layerFile
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		name := path.Clean(f.Name)
		if path.IsAbs(name) || name == "." || strings.HasPrefix(name, "../") || name == ".." {
			return nil, fmt.Errorf("reading zoneinfo.zip: bad entry name %q", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("reading zoneinfo.zip: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxZoneBytes+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("reading zoneinfo.zip %s: %w", f.Name, err)
		}
		if len(b) > maxZoneBytes {
			return nil, fmt.Errorf("reading zoneinfo.zip: %s is larger than %d bytes", f.Name, maxZoneBytes)
		}
		files = append(files, fileFromBytes(b, path.Join(ZoneinfoDir, name), 0o644))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("reading zoneinfo.zip: no zones")
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files, nil
}

// maxZoneBytes bounds one zone file (the largest is a few KiB).
const maxZoneBytes = 1 << 20

// toolchainZoneinfo reads zoneinfo.zip of the Go toolchain gobin.
func toolchainZoneinfo(ctx context.Context, gobin string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, gobin, "env", "GOROOT")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("finding GOROOT for the time zone database: %w", err)
	}
	root := strings.TrimSpace(string(out))
	if root == "" {
		return nil, fmt.Errorf("finding GOROOT for the time zone database: go env GOROOT is empty")
	}
	b, err := os.ReadFile(filepath.Join(root, "lib", "time", "zoneinfo.zip"))
	if err != nil {
		return nil, fmt.Errorf("reading the time zone database: %w", err)
	}
	return b, nil
}
