package trivy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCorrections(t *testing.T) {
	sp, err := staticPaths()
	if err != nil {
		t.Fatal(err)
	}
	reg := func(p string) indexEntry { return indexEntry{Path: p, Type: entryFile, Mode: 0o644, Size: 1} }
	sym := func(p, to string) indexEntry { return indexEntry{Path: p, Type: entrySymlink, Link: to} }
	wh := func(p string) indexEntry { return indexEntry{Path: p, Type: entryWhiteout} }
	for _, tc := range []struct {
		name   string
		layers [][]indexEntry
		want   []string // "path" for content, "-path" for a whiteout
	}{
		{"plain debian, os-release symlinked as Debian ships it", [][]indexEntry{{
			reg("usr/lib/os-release"), sym("etc/os-release", "../usr/lib/os-release"),
			reg("etc/debian_version"), reg("var/lib/dpkg/status"),
		}}, nil},
		{"symlinked dpkg dir", [][]indexEntry{{
			reg("etc/debian_version"), reg("opt/db/status"), reg("opt/db/status.d/base"), sym("var/lib/dpkg", "/opt/db"),
		}}, []string{"var/lib/dpkg/status", "var/lib/dpkg/status.d/base"}},
		{"symlink target whited out later", [][]indexEntry{
			{reg("opt/db/status"), sym("var/lib/dpkg", "/opt/db")},
			{wh("opt/db")},
		}, nil},
		{"status replaced through a symlinked dir removes the stale one", [][]indexEntry{
			{reg("var/lib/dpkg/status")},
			{wh("var/lib/dpkg"), sym("var/lib/dpkg", "../../srv")},
		}, nil},
		{"directory replaced by a symlink to nothing", [][]indexEntry{
			{reg("var/lib/dpkg/status")},
			{sym("var/lib/dpkg", "/nowhere")},
		}, []string{"-var/lib/dpkg/status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFSModel()
			for i, es := range tc.layers {
				if _, err := m.apply(i, &layerIndex{Entries: es}); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, c := range m.corrections(sp) {
				if c.whiteout {
					got = append(got, "-"+c.path)
				} else {
					got = append(got, c.path)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("corrections (-want +got):\n%s", diff)
			}
		})
	}
}
