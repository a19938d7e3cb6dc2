package healing

import (
	"fmt"
	"testing"

	"github.com/vigil-agent/vigil/internal/fuzztest"
)

// FuzzParsePolicies fuzzes the policy-file decoder, ParsePolicies (YAML,
// matchers and parameter templates), and renders every step of an
// accepted file from a fixed label set (the templates' executor). Oracle:
// fuzztest.Bounded (no panic, at most fuzztest.AllocBudget bytes per input, no
// hang) and a tree is returned exactly when there is no error. Seeds:
// the examples of docs/healing.md and the alias bomb of issue 18.
func FuzzParsePolicies(f *testing.F) {
	for _, b := range fuzztest.DocBlocks(f, "../docs/healing.md", "policies:") {
		f.Add(b)
	}
	f.Add(fuzztest.AliasBomb("policies:\n  routes:\n", "{name: p, steps: [{action: exec, params: {command: [/bin/true]}}]}", "    "))
	f.Add([]byte("policies:\n  steps: [{action: exec, params: {command: ['{{.pod}}', '--name={{index . \"a b\"}}']}}]\n"))
	f.Add([]byte("policies:\n  steps: [{action: exec, params: {command: ['{{range .}}{{end}}{{template \"x\"}}{{.a.b}}']}}]\n"))
	labels := map[string]string{"alertname": "A", "pod": "p-1", "namespace": "default", "instance": "node-1", "a b": "c"}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzztest.Bounded(t, data, func() error {
			tree, err := ParsePolicies("fuzz.yaml", data)
			if (tree == nil) == (err == nil) {
				return fmt.Errorf("ParsePolicies returned tree %v and error %v", tree, err)
			}
			if err != nil {
				return nil
			}
			for _, p := range tree.Policies {
				for _, s := range append(p.Steps, p.Escalate) {
					if s != nil {
						_, _ = s.Render(labels)
					}
				}
			}
			tree.Match(labels)
			return nil
		})
	})
}
