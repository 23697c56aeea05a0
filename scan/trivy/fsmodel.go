package trivy

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// The filesystem model: the entries of every layer (their layerIndex, no
// content) applied in order as containerd and runc unpack an image, so the
// scan can know what the final filesystem holds where Trivy's own merge
// (regular files by path, whiteouts as path prefixes) cannot: the content
// behind a hard link, and package databases reached through symlinks.

// origin locates the content of a regular file: entry Entry of layer Layer.
type origin struct {
	Layer, Entry int
}

type fnode struct {
	kind     byte // 'd' dir, 'f' regular file, 'l' symlink, 'o' other
	link     string
	origin   origin
	mode     int64
	size     int64
	children map[string]*fnode
}

func newDir() *fnode { return &fnode{kind: 'd', children: map[string]*fnode{}} }

// maxLinks bounds symlink resolution, as Linux's ELOOP does.
const maxLinks = 40

// fsModel is the true filesystem after the layers applied so far, and the
// view Trivy's applier has of the same layers (regular files by path).
type fsModel struct {
	root  *fnode
	naive map[string]naiveFile
}

// naiveFile is a regular file as Trivy's applier sees it.
type naiveFile struct {
	origin     origin
	mode, size int64
}

func newFSModel() *fsModel {
	return &fsModel{root: newDir(), naive: map[string]naiveFile{}}
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// resolve walks p from the root, following symlinks in every component
// (and in the last one when followLast is set), as a path lookup inside
// the container's root does. It returns the node and its real path, or nil
// when p does not exist.
func (m *fsModel) resolve(p string, followLast bool) (*fnode, string) {
	rest := splitPath(p)
	cur, curPath := m.root, []string{}
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			if len(curPath) > 0 {
				curPath = curPath[:len(curPath)-1]
				cur = m.lookupDir(curPath)
				if cur == nil {
					return nil, ""
				}
			}
			continue
		}
		if cur.kind != 'd' {
			return nil, ""
		}
		child := cur.children[c]
		if child == nil {
			return nil, ""
		}
		if child.kind == 'l' && (len(rest) > 0 || followLast) {
			links++
			if links > maxLinks {
				return nil, ""
			}
			target := splitPath(child.link)
			rest = append(target, rest...)
			if strings.HasPrefix(child.link, "/") {
				cur, curPath = m.root, []string{}
			}
			continue
		}
		if len(rest) > 0 && child.kind != 'd' {
			return nil, ""
		}
		cur = child
		curPath = append(curPath, c)
	}
	return cur, strings.Join(curPath, "/")
}

func (m *fsModel) lookupDir(comps []string) *fnode {
	cur := m.root
	for _, c := range comps {
		cur = cur.children[c]
		if cur == nil || cur.kind != 'd' {
			return nil
		}
	}
	return cur
}

// parentDir resolves the directory an entry named p is created in,
// creating missing directories as unpacking does.
func (m *fsModel) parentDir(p string) (*fnode, error) {
	dir := path.Dir(p)
	if dir == "." || dir == "/" {
		return m.root, nil
	}
	if n, _ := m.resolve(dir, true); n != nil {
		if n.kind != 'd' {
			return nil, fmt.Errorf("%s: parent is not a directory", p)
		}
		return n, nil
	}
	// Create the missing components one by one.
	cur := ""
	for _, c := range splitPath(dir) {
		next := path.Join(cur, c)
		n, _ := m.resolve(next, true)
		if n == nil {
			parent, _ := m.resolve(cur, true)
			if parent == nil || parent.kind != 'd' {
				return nil, fmt.Errorf("%s: parent is not a directory", p)
			}
			n = newDir()
			// A dangling symlink in the way is replaced, as mkdir -p
			// through it would fail and unpacking recreates the entry.
			parent.children[c] = n
		} else if n.kind != 'd' {
			return nil, fmt.Errorf("%s: parent is not a directory", p)
		}
		cur = next
	}
	n, _ := m.resolve(dir, true)
	if n == nil || n.kind != 'd' {
		return nil, fmt.Errorf("%s: parent is not a directory", p)
	}
	return n, nil
}

// naiveDelete removes what Trivy's applier removes for a whiteout of p (or
// an opaque directory p): p itself and everything under it.
func (m *fsModel) naiveDelete(p string) {
	for k := range m.naive {
		if p == "" || k == p || strings.HasPrefix(k, p+"/") {
			delete(m.naive, k)
		}
	}
}

// apply applies the entries of layer li. Whiteouts and opaque markers hide
// lower layers only, so they are applied first, as both containerd and
// Trivy do. It returns, for each hard link entry, the origin of the
// content it links to.
func (m *fsModel) apply(li int, idx *layerIndex) (map[int]origin, error) {
	for _, e := range idx.Entries {
		switch e.Type {
		case entryWhiteout:
			m.naiveDelete(e.Path)
			if parent, _ := m.resolve(path.Dir(e.Path), true); parent != nil && parent.kind == 'd' {
				delete(parent.children, path.Base(e.Path))
			}
		case entryOpaque:
			m.naiveDelete(e.Path)
			if dir, _ := m.resolve(e.Path, true); dir != nil && dir.kind == 'd' {
				dir.children = map[string]*fnode{}
			}
		}
	}
	links := map[int]origin{}
	for i, e := range idx.Entries {
		if e.Type == entryWhiteout || e.Type == entryOpaque || e.Path == "" {
			continue
		}
		parent, err := m.parentDir(e.Path)
		if err != nil {
			return nil, err
		}
		base := path.Base(e.Path)
		old := parent.children[base]
		var n *fnode
		switch e.Type {
		case entryDir:
			if old != nil && old.kind == 'd' {
				continue
			}
			n = newDir()
		case entryFile:
			n = &fnode{kind: 'f', origin: origin{li, i}, mode: e.Mode, size: e.Size}
			m.naive[e.Path] = naiveFile{origin: n.origin, mode: e.Mode, size: e.Size}
		case entrySymlink:
			n = &fnode{kind: 'l', link: e.Link}
		case entryHardlink:
			t, _ := m.resolve(e.Link, true)
			if t == nil || t.kind != 'f' {
				return nil, fmt.Errorf("hard link %s: target %s is not a regular file in the layers below or earlier in this one (a runtime cannot unpack this layer; fix the image)", e.Path, e.Link)
			}
			n = &fnode{kind: 'f', origin: t.origin, mode: t.mode, size: t.size}
			links[i] = t.origin
			m.naive[e.Path] = naiveFile{origin: t.origin, mode: t.mode, size: t.size}
		default:
			n = &fnode{kind: 'o'}
		}
		// A directory replaced by a non-directory loses its content; Trivy's
		// merge does not know that (naive keeps it), corrections do.
		parent.children[base] = n
	}
	return links, nil
}

// correction is one entry of the layer that makes Trivy's view of a
// package-database path match the filesystem: a regular file with the
// content of origin, or a whiteout.
type correction struct {
	path       string
	whiteout   bool
	origin     origin
	mode, size int64
}

// corrections compares, for every package-database and OS-release path
// Trivy's analyzers read (staticPaths: files, or directories ending in
// "/" whose direct children are read), the final filesystem with Trivy's
// merged view of the layers, and returns what makes them agree. Without
// symlinks and hard links the two agree and nothing is returned.
func (m *fsModel) corrections(staticPaths []string) []correction {
	want := map[string]*fnode{}
	have := map[string]naiveFile{}
	for _, sp := range staticPaths {
		p := strings.Trim(sp, "/")
		if p == "" {
			continue
		}
		if strings.HasSuffix(sp, "/") {
			if dir, _ := m.resolve(p, true); dir != nil && dir.kind == 'd' {
				for name := range dir.children {
					if f, _ := m.resolve(p+"/"+name, true); f != nil && f.kind == 'f' {
						want[p+"/"+name] = f
					}
				}
			}
			for k, v := range m.naive {
				if strings.HasPrefix(k, p+"/") && !strings.Contains(k[len(p)+1:], "/") {
					have[k] = v
				}
			}
			continue
		}
		if f, _ := m.resolve(p, true); f != nil && f.kind == 'f' {
			want[p] = f
		}
		if v, ok := m.naive[p]; ok {
			have[p] = v
		}
	}
	read := map[origin]bool{}
	for _, h := range have {
		read[h.origin] = true
	}
	var out []correction
	for p, f := range want {
		h, ok := have[p]
		switch {
		case ok && h.origin == f.origin:
		case !ok && read[f.origin]:
			// A symlink to a file Trivy reads at its own path already
			// (Debian's etc/os-release → ../usr/lib/os-release).
		default:
			out = append(out, correction{path: p, origin: f.origin, mode: f.mode, size: f.size})
		}
	}
	for p := range have {
		if want[p] == nil {
			out = append(out, correction{path: p, whiteout: true})
		}
	}
	slices.SortFunc(out, func(a, b correction) int { return strings.Compare(a.path, b.path) })
	return out
}
