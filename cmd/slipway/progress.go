package main

import (
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// uploadProgress returns a progress function for publish.WithProgress that
// draws one bar per pushed index on a terminal, and a function that waits
// for the bars to be drawn; both are nil when stderr is not a terminal or
// logs are JSON (then plain log lines say what happened).
func uploadProgress(g *globalFlags) (func(name.Reference) chan<- v1.Update, func()) {
	if g.logFormat == "json" || g.quiet || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil, nil
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	return func(ref name.Reference) chan<- v1.Update {
		ch := make(chan v1.Update, 16)
		label := ref.Context().RepositoryStr()
		bar := p.AddBar(0,
			mpb.PrependDecorators(decor.Name(label+" ", decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")),
		)
		go func() {
			var last v1.Update
			for u := range ch {
				if u.Error != nil {
					bar.Abort(false)
					continue
				}
				last = u
				bar.SetTotal(u.Total, false)
				bar.SetCurrent(u.Complete)
			}
			if !bar.Aborted() {
				bar.SetTotal(last.Complete, true)
			}
		}()
		return ch
	}, p.Wait
}
