package pipeline

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-build/slipway/build"
)

// Issue 14 items 1–3: a bad files, image.scratch or image.healthcheck
// value is a *ConfigError naming the file, the key and (through KeyLine,
// as the CLI does) its line.
func TestValidateImageHabits(t *testing.T) {
	head := "targets:\n  - name: a\n"
	for _, c := range []struct {
		name, yaml, key, msg string
		line                 int
	}{
		{"ok", head + "    files:\n      - {src: conf, dst: /etc/a, mode: \"0640\"}\n    image:\n      scratch: {zoneinfo: false, passwd: true, tmp: true}\n      healthcheck: {test: [/app/a, -health], interval: 30s, timeout: 5s, start_period: 1s, retries: 3}\n", "", "", 0},
		{"unquoted mode", head + "    files:\n      - {src: conf, dst: /etc/a, mode: 0640}\n", "", "", 0},
		{"no src", head + "    files:\n      - dst: /etc/a\n", "targets[0].files[0].src", "required", 4},
		{"no dst", head + "    files:\n      - src: x\n", "targets[0].files[0].dst", "required", 4},
		{"relative dst", head + "    files:\n      - src: x\n        dst: etc/a\n", "targets[0].files[0].dst", "absolute", 5},
		{"root dst", head + "    files:\n      - src: x\n        dst: /\n", "targets[0].files[0].dst", "absolute", 5},
		{"binary dst", head + "    files:\n      - src: x\n        dst: /app/a\n", "targets[0].files[0].dst", "the binary", 5},
		{"bad mode", head + "    files:\n      - src: x\n        dst: /a\n        mode: rw\n", "targets[0].files[0].mode", "octal", 6},
		{"mode too big", head + "    files:\n      - src: x\n        dst: /a\n        mode: \"17777\"\n", "targets[0].files[0].mode", "octal", 6},
		{"scratch on other base", "base: example.com/base:1\n" + head + "    image:\n      scratch:\n        tmp: true\n", "targets[0].image.scratch.tmp", "scratch base only", 6},
		{"scratch on target base", head + "    base: example.com/base:1\n    image:\n      scratch: {passwd: true}\n", "targets[0].image.scratch.passwd", "scratch base only", 5},
		{"no test", head + "    image:\n      healthcheck:\n        interval: 5s\n", "targets[0].image.healthcheck.test", "required", 4},
		{"shell form", head + "    image:\n      healthcheck:\n        test: [CMD-SHELL, curl -f localhost]\n", "targets[0].image.healthcheck.test", "exec form only", 5},
		{"bare CMD", head + "    image:\n      healthcheck:\n        test: [CMD]\n", "targets[0].image.healthcheck.test", "needs a command", 5},
		{"NONE with args", head + "    image:\n      healthcheck:\n        test: [NONE, x]\n", "targets[0].image.healthcheck.test", "no arguments", 5},
		{"negative interval", head + "    image:\n      healthcheck:\n        test: [/app/a]\n        interval: -1s\n", "targets[0].image.healthcheck.interval", "at least 1ms", 6},
		{"tiny timeout", head + "    image:\n      healthcheck:\n        test: [/app/a]\n        timeout: 10us\n", "targets[0].image.healthcheck.timeout", "at least 1ms", 6},
		{"negative retries", head + "    image:\n      healthcheck:\n        test: [/app/a]\n        retries: -1\n", "targets[0].image.healthcheck.retries", "negative", 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := DecodeStrict("f.yaml", []byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate("f.yaml")
			if c.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantConfigError(t, err, c.key, c.msg)
			if !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Errorf("err = %v, want it to name f.yaml", err)
			}
			if got := KeyLine([]byte(c.yaml), c.key); got != c.line {
				t.Errorf("KeyLine(%s) = %d, want %d", c.key, got, c.line)
			}
		})
	}
}

func TestDecodeImageHabitsUnknownKeys(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"targets:\n  - name: a\n    image:\n      scratch: {zonefile: true}\n", "f.yaml:4: targets[].image.scratch.zonefile: unknown key"},
		{"targets:\n  - name: a\n    image:\n      healthcheck:\n        cmd: [x]\n", "f.yaml:5: targets[].image.healthcheck.cmd: unknown key"},
		{"targets:\n  - name: a\n    files:\n      - source: x\n", "f.yaml:4: targets[].files[].source: unknown key"},
		{"targets:\n  - name: a\n    image:\n      healthcheck: {test: [x], interval: often}\n", "f.yaml:4: healthcheck: wrong type"},
	} {
		_, err := DecodeStrict("f.yaml", []byte(c.yaml))
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}

func TestPlanImageHabits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	dir := t.TempDir()
	writeModule(t, dir)
	jobs, err := plan(t, dir, `targets:
  - name: a
    main: ./cmd/app
    files:
      - {src: conf/a.yaml, dst: /etc/a.yaml, mode: "0640"}
      - {src: /abs/dir, dst: /srv}
    image:
      scratch: {tmp: false}
      healthcheck: {test: [/app/a, -health], interval: 30s, retries: 2}
  - name: b
    main: ./cmd/app
    image:
      healthcheck: {test: [CMD, /app/b]}
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := jobs[0].Target, jobs[1].Target
	wantFiles := []build.File{{Src: filepath.Join(dir, "conf", "a.yaml"), Dst: "/etc/a.yaml", Mode: 0o640}, {Src: "/abs/dir", Dst: "/srv"}}
	if !slices.Equal(a.Files, wantFiles) {
		t.Errorf("files = %+v, want %+v", a.Files, wantFiles)
	}
	if want := (build.ScratchFiles{Zoneinfo: true, Passwd: true}); a.Image.Scratch != want {
		t.Errorf("a scratch = %+v, want %+v", a.Image.Scratch, want)
	}
	if want := (build.ScratchFiles{Zoneinfo: true, Passwd: true, Tmp: true}); b.Image.Scratch != want {
		t.Errorf("b scratch (defaults) = %+v, want %+v", b.Image.Scratch, want)
	}
	hc := a.Image.Healthcheck
	if hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/app/a", "-health"}) || hc.Interval != 30*time.Second || hc.Retries != 2 {
		t.Errorf("a healthcheck = %+v", hc)
	}
	if hc := b.Image.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/app/b"}) {
		t.Errorf("b healthcheck = %+v", hc)
	}
}
