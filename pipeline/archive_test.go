package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-build/slipway/internal/fakes"
	"github.com/slipway-build/slipway/pipeline"
	"github.com/slipway-build/slipway/publish"
)

// TestRunArchive (issue 14 item 10): --oci-archive writes every target
// into one tar that reads back as the layout, with the references naming
// the archive; until Commit nothing is at the file, and Close leaves no
// temporary layout behind.
func TestRunArchive(t *testing.T) {
	file := filepath.Join(t.TempDir(), "images.tar")
	d, err := pipeline.NewArchiveDestination(file)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := stages(&fakes.Log{}, &fakes.Builder{}, nil)
	st.Signer = nil
	st.Destination = d
	res, err := pipeline.Run(context.Background(), jobs("a", "b"), st, pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("archive exists before Commit: %v", err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, tr := range res.Targets {
		if !strings.HasPrefix(tr.Ref, publish.ArchivePrefix+file+"@sha256:") || !tr.Pushed {
			t.Errorf("%s: ref %q pushed %v", tr.Target, tr.Ref, tr.Pushed)
		}
		want[tr.Target] = tr.Digest
	}
	dir, cleanup, err := publish.OpenArchive(file)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	l, err := publish.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Target] = e.Digest.String()
		if strings.Join(e.Tags, ",") != "latest" {
			t.Errorf("%s: tags %v", e.Target, e.Tags)
		}
	}
	if len(got) != 2 || got["a"] != want["a"] || got["b"] != want["b"] {
		t.Fatalf("archive holds %v, run wrote %v", got, want)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
