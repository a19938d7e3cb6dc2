package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestRulesCheck(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"rules", "check", "embedded:*.rules.yml"}, &out, &errb); code != 0 {
		t.Fatalf("embedded rules: exit %d: %s", code, errb.String())
	}
	if !regexp.MustCompile(`embedded:node\.rules\.yml: SUCCESS: [1-9][0-9]* rules found`).MatchString(out.String()) {
		t.Errorf("stdout = %q", out.String())
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("groups:\n  - name: g\n    rules:\n      - alert: Bad\n        expr: up ==\n"), 0o644)
	out.Reset()
	errb.Reset()
	if code := Main([]string{"rules", "check", "embedded:node.rules.yml", bad}, &out, &errb); code != 1 {
		t.Fatalf("bad file: exit %d, want 1", code)
	}
	if want := bad + `: 5:15: group "g", rule 1, "Bad": could not parse expression`; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr = %q, want %q", errb.String(), want)
	}
}

func TestRulesTest(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"rules", "test", "embedded:tests/*.test.yml"}, &out, &errb); code != 0 {
		t.Fatalf("embedded tests: exit %d\n%s%s", code, out.String(), errb.String())
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.yml"), []byte("groups:\n  - name: g\n    rules:\n      - alert: Up\n        expr: up == 1\n"), 0o644)
	test := filepath.Join(dir, "r.test.yml")
	os.WriteFile(test, []byte(`rule_files: [r.yml]
tests:
  - input_series:
      - series: up{job="a"}
        values: 1x3
    alert_rule_test:
      - eval_time: 1m
        alertname: Up
        exp_alerts: []
`), 0o644)
	out.Reset()
	errb.Reset()
	if code := Main([]string{"rules", "test", test}, &out, &errb); code != 1 {
		t.Fatalf("failing test: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "alertname: Up, time: 1m") || !strings.Contains(errb.String(), `Labels:{alertname="Up", job="a"}`) {
		t.Errorf("stderr = %q", errb.String())
	}
}
