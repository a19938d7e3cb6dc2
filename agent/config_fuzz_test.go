package agent

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vigil-agent/vigil/internal/fuzztest"
)

// FuzzLoadBounded fuzzes the agent configuration decoder, Load (YAML with
// every section, healing.policies included), under the oracle of
// fuzztest.Bounded: no panic, at most fuzztest.AllocBudget bytes allocated per
// input, no hang, and an accepted configuration validates. Seeds: the
// embedded default, every YAML example of docs/ and the 444-byte alias
// bomb under healing.policies (issue 18).
func FuzzLoadBounded(f *testing.F) {
	f.Add(DefaultConfigYAML)
	docs, _ := filepath.Glob("../docs/*.md")
	for _, d := range append(docs, "../README.md") {
		for _, b := range fuzztest.DocBlocks(f, d, "") {
			f.Add(b)
		}
	}
	f.Add(fuzztest.AliasBomb("healing:\n  policies:\n    routes:\n", "{matchers: ['a=\"b\"']}", "      "))
	f.Add([]byte("healing:\n  policies: &p {routes: [*p]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzztest.Bounded(t, data, func() error {
			c, err := Load("fuzz.yaml", data)
			if err != nil {
				if c != nil {
					return fmt.Errorf("Load returned a configuration with the error %v", err)
				}
				return nil
			}
			if err := c.Validate(); err != nil {
				return fmt.Errorf("Load accepted a configuration that does not validate: %v", err)
			}
			return nil
		})
	})
}
