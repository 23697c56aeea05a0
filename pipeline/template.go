package pipeline

import (
	"fmt"
	"strings"
	"text/template"
)

// TemplateData is what {{…}} in tags, ldflags, labels, annotations and env
// values can use.
type TemplateData struct {
	// Git holds facts about the source's checkout.
	Git GitInfo
	// Env is the process environment.
	Env map[string]string
	// Date is the build timestamp (RFC 3339, UTC): SOURCE_DATE_EPOCH, else
	// the commit time, else the epoch, so templates stay reproducible.
	Date string
	// Target is the target's name.
	Target string
}

// Expand executes the template s. A missing key is an error, not "<no value>".
func Expand(s string, data TemplateData) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	t, err := template.New("").Option("missingkey=error").Parse(s)
	if err != nil {
		return "", fmt.Errorf("parsing template %q: %w", s, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("expanding template %q: %w", s, err)
	}
	return b.String(), nil
}

func expandAll(in []string, data TemplateData) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		v, err := Expand(s, data)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func expandMap(in map[string]string, data TemplateData) (map[string]string, error) {
	if in == nil {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for k, s := range in {
		v, err := Expand(s, data)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}
