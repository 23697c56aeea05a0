package pipeline

import "testing"

func TestKeyLine(t *testing.T) {
	doc := `# a comment
repository: r.example.com
platforms:
  - linux/amd64
  - linux/arm64
targets:
  - name: a
  - name: b
    env: [A=1, B]
    image:
      workdir: rel
scan: {severity: [HIGH, bad]}
`
	for key, want := range map[string]int{
		"repository":               2,
		"platforms":                3,
		"platforms[1]":             5,
		"platforms[7]":             3, // past the end (a "a,b" entry split): the list
		"targets[1].name":          8,
		"targets[1].env[1]":        9, // flow sequence: the line it is on
		"targets[1].image.workdir": 11,
		"targets[1].base":          8, // not written: the nearest ancestor
		"scan.severity[1]":         12,
		"sign.key":                 0,
		"":                         0,
	} {
		if got := KeyLine([]byte(doc), key); got != want {
			t.Errorf("KeyLine(%q) = %d, want %d", key, got, want)
		}
	}
	if got := KeyLine([]byte("{{not yaml"), "a"); got != 0 {
		t.Errorf("invalid YAML: %d", got)
	}
}
