package pipeline

import (
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/slipway-build/slipway/build"
)

// TemplateData is what {{…}} in tags, ldflags, labels, annotations and env
// values can use.
type TemplateData struct {
	// Git holds facts about the source's checkout.
	Git GitInfo
	// Env is the process environment without slipway's secrets
	// (build.SecretEnv and the variable of sign.key: env://VAR); a template
	// naming one of them is refused.
	Env map[string]string
	// Date is the build timestamp (RFC 3339, UTC): SOURCE_DATE_EPOCH, else
	// the commit time, else the epoch, so templates stay reproducible.
	Date string
	// Target is the target's name.
	Target string

	// secret are variables besides build.SecretEnv that templates may not
	// read.
	secret []string
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
	for _, tt := range t.Templates() {
		name := ""
		if tt.Tree != nil {
			name = secretIn(tt.Root, data.secret)
		}
		if name == "" {
			continue
		}
		return "", fmt.Errorf("template %q reads %s, which holds a credential of slipway's: a template's value ends up in the binary or the image; remove it, and give the program its secrets at run time", s, name)
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

// secretIn returns the first secret variable name the template tree
// mentions (as .Env.NAME, .NAME inside {{with .Env}}, $x.NAME or the string
// "NAME", as in index .Env "NAME"), or "". Env holds no secret anyway: this
// turns an attempt into a clear error instead of a missing key.
func secretIn(n parse.Node, secret []string) string {
	isSecret := func(names ...string) string {
		for _, s := range names {
			if build.IsSecretEnv(s, secret) {
				return s
			}
		}
		return ""
	}
	switch n := n.(type) {
	case nil:
		return ""
	case *parse.ListNode:
		if n == nil {
			return ""
		}
		for _, c := range n.Nodes {
			if s := secretIn(c, secret); s != "" {
				return s
			}
		}
	case *parse.ActionNode:
		return secretIn(n.Pipe, secret)
	case *parse.PipeNode:
		if n == nil {
			return ""
		}
		for _, c := range n.Cmds {
			if s := secretIn(c, secret); s != "" {
				return s
			}
		}
	case *parse.CommandNode:
		for _, c := range n.Args {
			if s := secretIn(c, secret); s != "" {
				return s
			}
		}
	case *parse.FieldNode:
		return isSecret(n.Ident...)
	case *parse.VariableNode:
		return isSecret(n.Ident...)
	case *parse.ChainNode:
		if s := isSecret(n.Field...); s != "" {
			return s
		}
		return secretIn(n.Node, secret)
	case *parse.StringNode:
		return isSecret(n.Text)
	case *parse.IfNode:
		return firstSecret(secret, n.Pipe, n.List, n.ElseList)
	case *parse.RangeNode:
		return firstSecret(secret, n.Pipe, n.List, n.ElseList)
	case *parse.WithNode:
		return firstSecret(secret, n.Pipe, n.List, n.ElseList)
	case *parse.TemplateNode:
		return secretIn(n.Pipe, secret)
	}
	return ""
}

func firstSecret(secret []string, nodes ...parse.Node) string {
	for _, n := range nodes {
		if l, ok := n.(*parse.ListNode); ok && l == nil {
			continue
		}
		if p, ok := n.(*parse.PipeNode); ok && p == nil {
			continue
		}
		if s := secretIn(n, secret); s != "" {
			return s
		}
	}
	return ""
}
