package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// File is a file or directory of the build machine copied into the image.
type File struct {
	// Src is the absolute path of a file or directory on the build machine.
	Src string
	// Dst is the absolute path it becomes in the image; a directory's
	// contents go under it.
	Dst string
	// Mode is the permission of the regular files copied (0: 0755 when the
	// source is executable by its owner, else 0644). Directories are 0755.
	Mode int64
}

// KoDataDir is ko's static data directory: a directory named kodata beside
// the main package is copied to KoDataPath and KO_DATA_PATH names it.
const (
	KoDataDir  = "kodata"
	KoDataPath = "/var/run/ko"
	KoDataEnv  = "KO_DATA_PATH"
)

// mainDir is the directory of t's main package on the build machine.
func (t Target) mainDir() string {
	return filepath.Join(t.Dir, filepath.FromSlash(t.Main))
}

// koData returns the main package's kodata directory, or "" when it has
// none.
func (t Target) koData() (string, error) {
	d := filepath.Join(t.mainDir(), KoDataDir)
	fi, err := os.Stat(d)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading %s: %w", d, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%s is not a directory", d)
	}
	return d, nil
}

// staticFiles lists the layer entries of t's kodata directory and Files,
// in a reproducible form: owner root, directories 0755, files 0644 or 0755
// (or their Mode). A symlink is followed when it resolves inside the tree
// being copied (a directory entry's Src; for a single file, the directory
// holding it) to a regular file, and refused otherwise.
func staticFiles(t Target) ([]layerFile, error) {
	var out []layerFile
	kd, err := t.koData()
	if err != nil {
		return nil, err
	}
	if kd != "" {
		lfs, err := treeFiles(File{Src: kd, Dst: KoDataPath})
		if err != nil {
			return nil, err
		}
		out = append(out, lfs...)
	}
	for _, f := range t.Files {
		lfs, err := treeFiles(f)
		if err != nil {
			return nil, err
		}
		out = append(out, lfs...)
	}
	bin := path.Join(AppDir, t.Name)
	explicit := map[string]bool{}
	for _, f := range out {
		if f.path == bin {
			return nil, fmt.Errorf("static file %s would replace the binary", bin)
		}
		if f.dir {
			explicit[f.path] = true
		}
	}
	// A layer's directory entry replaces the mode and owner of the
	// directory below it: keep /tmp (1777) and nonroot's home as scratch
	// and distroless have them when files go under them.
	for _, d := range []layerFile{dirEntry("/tmp", 0o1777, 0, 0), dirEntry("/home/nonroot", 0o700, nonrootID, nonrootID)} {
		if explicit[d.path] {
			continue
		}
		for _, f := range out {
			if strings.HasPrefix(f.path, d.path+"/") {
				out = append(out, d)
				break
			}
		}
	}
	return out, nil
}

// treeFiles lists f's entries: f.Src itself when it is a file, else every
// file and directory under it.
func treeFiles(f File) ([]layerFile, error) {
	if !filepath.IsAbs(f.Src) {
		return nil, fmt.Errorf("static file source %s: not an absolute path", f.Src)
	}
	dst := path.Clean(f.Dst)
	if !path.IsAbs(dst) || dst == "/" {
		return nil, fmt.Errorf("static file %s: destination %q must be an absolute path below /", f.Src, f.Dst)
	}
	fi, err := os.Lstat(f.Src)
	if err != nil {
		return nil, fmt.Errorf("static file: %w", err)
	}
	if !fi.IsDir() {
		lf, err := treeFile(filepath.Dir(f.Src), f.Src, dst, f.Mode)
		if err != nil {
			return nil, err
		}
		return []layerFile{lf}, nil
	}
	root := f.Src
	var out []layerFile
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("static files: %w", err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		to := path.Join(dst, filepath.ToSlash(rel))
		if d.IsDir() {
			out = append(out, dirEntry(to, 0o755, 0, 0))
			return nil
		}
		lf, err := treeFile(root, p, to, f.Mode)
		if err != nil {
			return err
		}
		out = append(out, lf)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// treeFile is the regular file at p (or the one a symlink at p resolves
// to, inside root) as the layer file dst.
func treeFile(root, p, dst string, mode int64) (layerFile, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return layerFile{}, fmt.Errorf("static file: %w", err)
	}
	src := p
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return layerFile{}, fmt.Errorf("static file %s: %w", p, err)
		}
		realRoot, err := filepath.EvalSymlinks(root)
		if err != nil {
			return layerFile{}, fmt.Errorf("static file %s: %w", p, err)
		}
		if rel, err := filepath.Rel(realRoot, target); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return layerFile{}, fmt.Errorf("static file %s: symlink to %s leaves %s", p, target, root)
		}
		if fi, err = os.Stat(target); err != nil {
			return layerFile{}, fmt.Errorf("static file %s: %w", p, err)
		}
		if fi.IsDir() {
			return layerFile{}, fmt.Errorf("static file %s: symlink to a directory (%s) is not supported", p, target)
		}
		src = target
	}
	if !fi.Mode().IsRegular() {
		return layerFile{}, fmt.Errorf("static file %s: not a regular file (%s)", p, fi.Mode().Type())
	}
	if mode == 0 {
		mode = 0o644
		if fi.Mode().Perm()&0o100 != 0 {
			mode = 0o755
		}
	}
	return fileFromDisk(src, dst, mode), nil
}
