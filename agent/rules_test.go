package agent

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The rules section through the agent: the rule set is served on
// /api/v1/rules, a reload with a broken rule file is refused with file,
// group and rule and keeps the running set, and a fixed file is swapped in.
func TestRulesReloadIsAtomic(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "site.rules.yml")
	writeFile(t, rulesPath, "groups:\n  - name: first\n    rules:\n      - alert: A\n        expr: vector(1)\n")
	cfgPath := filepath.Join(dir, "vigil.yaml")
	writeFile(t, cfgPath, "rules:\n  evaluation_interval: 1s\n  rule_files: ["+rulesPath+", \"embedded:node.rules.yml\"]\n")
	a, url := startAgent(t, cfgPath)

	groups := func() string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, _, body := get(t, url+"/api/v1/rules")
			if code == 200 || time.Now().After(deadline) {
				return body
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if b := groups(); !strings.Contains(b, `"name":"first"`) || !strings.Contains(b, `"name":"vigil-node"`) {
		t.Fatalf("/api/v1/rules = %s", b)
	}

	writeFile(t, rulesPath, "groups:\n  - name: second\n    rules:\n      - alert: B\n        expr: sum(rate(x[5m])\n")
	code, body := reload(t, a)
	if code != 500 || !strings.Contains(body, rulesPath+": 5:15: group \"second\", rule 1, \"B\"") {
		t.Errorf("bad rule file reload = %d %q, want 500 naming file, group and rule", code, body)
	}
	if b := groups(); !strings.Contains(b, `"name":"first"`) {
		t.Errorf("running rules lost after a bad reload: %s", b)
	}

	writeFile(t, rulesPath, "groups:\n  - name: second\n    rules:\n      - alert: B\n        expr: vector(2)\n")
	if code, body := reload(t, a); code != 200 {
		t.Fatalf("good reload = %d %q", code, body)
	}
	if b := groups(); !strings.Contains(b, `"name":"second"`) || strings.Contains(b, `"name":"first"`) {
		t.Errorf("rules not swapped: %s", b)
	}
}
