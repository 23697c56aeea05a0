package trivy

import (
	"context"
	"log/slog"
	"sync"

	tlog "github.com/aquasecurity/trivy/pkg/log"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

var routeTrivyLogsOnce sync.Once

// routeTrivyLogs deals with Trivy logging through slog.Default(). Importing
// Trivy installs a handler there that buffers every record in memory until
// Trivy's CLI initialises logging, without locking: a library user that
// never does so leaks memory and races under concurrent scans. If that
// handler is still installed when the first Scanner is made, it is replaced
// by one that sends Trivy's records to l, demoted one level (Trivy's Info
// chatter becomes Debug). A default logger set by the program is left alone.
func routeTrivyLogs(l *slog.Logger) {
	routeTrivyLogsOnce.Do(func() {
		if _, ok := slog.Default().Handler().(*tlog.DeferredHandler); ok {
			slog.SetDefault(slog.New(demote{l.Handler()}))
		}
	})
}

type demote struct{ h slog.Handler }

func level(l slog.Level) slog.Level {
	switch {
	case l >= slog.LevelError:
		return slog.LevelWarn
	case l >= slog.LevelWarn:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (d demote) Enabled(ctx context.Context, l slog.Level) bool { return d.h.Enabled(ctx, level(l)) }
func (d demote) Handle(ctx context.Context, r slog.Record) error {
	r.Level = level(r.Level)
	return d.h.Handle(ctx, r)
}
func (d demote) WithAttrs(a []slog.Attr) slog.Handler { return demote{d.h.WithAttrs(a)} }
func (d demote) WithGroup(g string) slog.Handler      { return demote{d.h.WithGroup(g)} }
