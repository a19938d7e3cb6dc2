package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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

// `vigil-tool rules test` refuses a series that would expand to a hundred
// million samples, naming the file and line.
func TestRulesTestBoundsSeries(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.yml"), []byte("groups: [{name: g, rules: [{record: r, expr: up}]}]\n"), 0o644)
	file := filepath.Join(dir, "t.test.yml")
	os.WriteFile(file, []byte("rule_files: [r.yml]\ntests:\n  - input_series:\n      - series: up\n        values: 0+1x100000000\n"), 0o644)
	var out, errb bytes.Buffer
	if code := Main([]string{"rules", "test", file}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
	}
	if want := file + ":5:17: input_series.values: series up expands to 100000001 samples"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr = %q, want %q", errb.String(), want)
	}
}
