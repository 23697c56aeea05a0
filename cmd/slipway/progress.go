package main

import (
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// uploadProgress returns a channel for publish.WithProgress that draws one
// upload bar on a terminal, and a function that closes it and waits for the
// bar to be drawn; both are nil when stderr is not a terminal or logs are
// JSON (then plain log lines say what happened).
func uploadProgress(g *globalFlags) (chan<- v1.Update, func()) {
	if g.logFormat == "json" || g.quiet || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil, nil
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	ch := make(chan v1.Update, 16)
	bar := p.AddBar(0,
		mpb.PrependDecorators(decor.Name("upload ", decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")),
	)
	go func() {
		var last v1.Update
		for u := range ch {
			if u.Error != nil {
				continue // the run reports the error; later writes go on
			}
			last = u
			bar.SetTotal(u.Total, false)
			bar.SetCurrent(u.Complete)
		}
		bar.SetTotal(last.Complete, true)
	}()
	return ch, func() { close(ch); p.Wait() }
}
