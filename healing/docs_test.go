package healing

import (
	"os"
	"strings"
	"testing"
)

// The policy examples in docs/healing.md load, so the documentation keeps
// up with what the loader refuses (templated destinations, missing
// allow-lists).
func TestDocumentedPoliciesLoad(t *testing.T) {
	doc, err := os.ReadFile("../docs/healing.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if !strings.HasPrefix(block, "policies:") {
			continue
		}
		n++
		if _, err := ParsePolicies("docs/healing.md", []byte(block)); err != nil {
			t.Errorf("example %d does not load: %v\n%s", n, err, block)
		}
	}
	if n == 0 {
		t.Fatal("no policies example found in docs/healing.md")
	}
}

// The actuator table in docs/healing.md is the one ActuatorTable renders
// (make generate writes it), and it lists every registered actuator.
func TestActuatorTableIsGenerated(t *testing.T) {
	doc, err := os.ReadFile("../docs/healing.md")
	if err != nil {
		t.Fatal(err)
	}
	// Actuators registered by this package's tests (test_*) are left out:
	// the generator (a binary without them) never lists them.
	var kept []string
	for _, l := range strings.SplitAfter(ActuatorTable(), "\n") {
		if !strings.HasPrefix(l, "| `test_") {
			kept = append(kept, l)
		}
	}
	table := strings.Join(kept, "")
	if !strings.Contains(string(doc), table) {
		t.Fatal("docs/healing.md's actuator table differs from ActuatorTable(); run make generate")
	}
	for _, name := range Actuators() {
		if !strings.HasPrefix(name, "test_") && !strings.Contains(table, "| `"+name+"` |") {
			t.Errorf("actuator %s missing from the table", name)
		}
	}
}
