package pipeline

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// GitInfo are the facts about the source's git checkout that templates can
// use as {{.Git.*}}. All are empty when the source is not in a repository.
type GitInfo struct {
	// Commit is the full hash of HEAD.
	Commit string
	// ShortCommit is its first 7 characters.
	ShortCommit string
	// Tag is a tag pointing at HEAD, empty when HEAD has none (a commit
	// after v1.2.0 is not v1.2.0: using that tag would overwrite a release).
	Tag string
	// CommitTime is HEAD's committer time (zero without a repository).
	CommitTime time.Time
	// CommitDate is CommitTime in RFC 3339, UTC.
	CommitDate string
	// Dirty is true when the tree differs from HEAD: modified tracked files
	// or untracked files not ignored, as `go build` decides vcs.modified,
	// so templates, provenance and the binary agree.
	Dirty bool
	// Branch is the current branch, empty when detached.
	Branch string
	// Remote is the URL of the "origin" remote, when set.
	Remote string
}

// ReadGit reads GitInfo for the repository containing dir.
func ReadGit(ctx context.Context, dir string) GitInfo {
	run := func(args ...string) (string, bool) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			return "", false
		}
		return strings.TrimSpace(out.String()), true
	}
	var g GitInfo
	commit, ok := run("rev-parse", "HEAD")
	if !ok {
		return g
	}
	g.Commit = commit
	if len(commit) >= 7 {
		g.ShortCommit = commit[:7]
	}
	if ts, ok := run("log", "-1", "--format=%ct", "HEAD"); ok {
		if sec, err := strconv.ParseInt(ts, 10, 64); err == nil {
			g.CommitTime = time.Unix(sec, 0).UTC()
			g.CommitDate = g.CommitTime.Format(time.RFC3339)
		}
	}
	if tag, ok := run("describe", "--tags", "--exact-match", "HEAD"); ok {
		g.Tag = tag
	}
	// The same command go build runs for vcs.modified.
	if st, ok := run("status", "--porcelain"); ok {
		g.Dirty = st != ""
	}
	if b, ok := run("symbolic-ref", "--short", "-q", "HEAD"); ok {
		g.Branch = b
	}
	if r, ok := run("remote", "get-url", "origin"); ok {
		g.Remote = r
	}
	return g
}

// BuildTime is the reproducible timestamp of a build: SOURCE_DATE_EPOCH
// when set, else the commit time of HEAD, else the Unix epoch.
func BuildTime(sourceDateEpoch string, g GitInfo) (time.Time, error) {
	if sourceDateEpoch != "" {
		sec, err := strconv.ParseInt(sourceDateEpoch, 10, 64)
		if err != nil {
			return time.Time{}, &ConfigError{Key: "SOURCE_DATE_EPOCH", Msg: "not a Unix time: " + strconv.Quote(sourceDateEpoch)}
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	if !g.CommitTime.IsZero() {
		return g.CommitTime, nil
	}
	return time.Unix(0, 0).UTC(), nil
}
