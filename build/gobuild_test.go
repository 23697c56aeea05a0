package build

import (
	"errors"
	"strings"
	"testing"
)

func TestGoBuildErrorQuotesFirstError(t *testing.T) {
	for _, tc := range []struct {
		name, out, want string
		more            bool
	}{{
		name: "module downloads before an embed error",
		out: "go: downloading github.com/a/b v1.2.3\ngo: downloading golang.org/x/text v0.3.7\n" +
			"ui/web.go:31:12: pattern app/dist: no matching files found\n",
		want: "ui/web.go:31:12: pattern app/dist: no matching files found",
	}, {
		name: "package header then compile errors",
		out:  "# example.com/app\n./main.go:5:2: undefined: x\n./main.go:6:2: undefined: y\n",
		want: "./main.go:5:2: undefined: x",
		more: true,
	}, {
		name: "a go command error after progress",
		out:  "go: downloading example.com/m v1.0.0\ngo: example.com/m@v1.0.0: missing go.sum entry\n",
		want: "go: example.com/m@v1.0.0: missing go.sum entry",
	}, {
		name: "prose before the position",
		out:  "package example.com/app/cmd/missing is not in std\nmain.go:1:1: also this\n",
		want: "main.go:1:1: also this",
		more: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e := &GoBuildError{Target: "app", Platform: "linux/amd64", Output: tc.out, Err: errors.New("exit status 1")}
			msg := e.Error()
			if !strings.HasPrefix(msg, "go build app for linux/amd64: "+tc.want) {
				t.Errorf("Error() = %q, want it to quote %q", msg, tc.want)
			}
			if strings.Contains(msg, "downloading") {
				t.Errorf("Error() = %q quotes go's progress", msg)
			}
			if got := strings.Contains(msg, "-v shows"); got != tc.more {
				t.Errorf("Error() = %q: mentions more output = %v, want %v", msg, got, tc.more)
			}
		})
	}
	e := &GoBuildError{Target: "app", Platform: "linux/amd64", Output: "go: downloading a v1\n", Err: errors.New("signal: killed")}
	if got, want := e.Error(), "go build app for linux/amd64: signal: killed"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
