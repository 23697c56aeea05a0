package pipeline

import (
	"bytes"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// KeyLine returns the 1-based line of key (as ConfigError.Key spells it:
// "targets[0].main", "platforms[1]", "scan.severity") in the YAML document
// data, or of its nearest ancestor written there; 0 when no part of it is.
func KeyLine(data []byte, key string) int {
	var doc yaml.Node
	if key == "" || yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc) != nil || len(doc.Content) == 0 {
		return 0
	}
	n, line := doc.Content[0], 0
	for _, seg := range keySegments(key) {
		next, at := child(n, seg)
		if next == nil {
			break
		}
		n, line = next, at
	}
	return line
}

// keySegments splits "targets[0].env[2]" into "targets", "[0]", "env", "[2]".
func keySegments(key string) []string {
	var out []string
	for _, part := range strings.Split(key, ".") {
		name, idx, _ := strings.Cut(part, "[")
		if name != "" {
			out = append(out, name)
		}
		for idx != "" {
			var i string
			i, idx, _ = strings.Cut(idx, "]")
			out = append(out, "["+i+"]")
			idx = strings.TrimPrefix(idx, "[")
		}
	}
	return out
}

// child is the value of seg ("name" or "[i]") in n, and the line it is
// written on (a mapping key's line, a sequence item's line).
func child(n *yaml.Node, seg string) (*yaml.Node, int) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if strings.HasPrefix(seg, "[") {
		i, err := strconv.Atoi(strings.Trim(seg, "[]"))
		if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
			return nil, 0
		}
		return n.Content[i], n.Content[i].Line
	}
	if n.Kind != yaml.MappingNode {
		return nil, 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == seg {
			return n.Content[i+1], n.Content[i].Line
		}
	}
	return nil, 0
}
