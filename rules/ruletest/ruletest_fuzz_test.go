package ruletest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/internal/fuzztest"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/internal/confyaml"
)

// FuzzRunFile fuzzes the rule-test file decoder and runner, RunFile
// (promtool's format: input series in promqltest's expanding notation,
// alert and expression tests), beside the rule file of testdata. Oracle:
// fuzztest.Bounded (no panic, at most fuzztest.AllocBudget bytes per input, no
// hang). Seeds: testdata's test files, the series "0+1x100000000" and the
// 3.6-billion-step evaluation of issue 18, a 70-year subquery at 1ms
// (35 TB of step counters before rules.MaxQuerySteps) and an alias bomb
// of series.
// Inputs whose rule_files leave the test's folder are skipped: reading
// /dev/zero or the whole disk is the operator's choice, not a decoder's.
func FuzzRunFile(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.test.yml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	const head = "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n"
	f.Add([]byte(head + "      - series: 'up{job=\"b\"}'\n        values: '0+1x100000000'\n    promql_expr_test:\n      - {expr: up, eval_time: 1m, exp_samples: []}\n"))
	f.Add([]byte(head + "      - {series: up, values: '{{schema:0 sum:1 count:1 buckets:[1]}}x100000000'}\n"))
	f.Add([]byte("rule_files: [rules.yml]\nevaluation_interval: 1ms\ntests:\n  - input_series: [{series: up, values: '1'}]\n    promql_expr_test: [{expr: up, eval_time: 1000h}]\n"))
	f.Add([]byte("rule_files: [rules.yml]\ntests:\n  - input_series: [{series: up, values: '1'}]\n    promql_expr_test: [{expr: 'last_over_time(up[70y:1ms])', eval_time: 1m}]\n"))
	var bomb strings.Builder
	bomb.WriteString(head + "      - &r0 {series: up, values: '1x1000'}\n")
	for k := 1; k <= 9; k++ {
		a := fmt.Sprintf("*r%d", k-1)
		fmt.Fprintf(&bomb, "      - &r%d [%s]\n", k, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	f.Add([]byte(bomb.String()))
	dir := f.TempDir()
	rules, err := os.ReadFile("testdata/rules.yml")
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), rules, 0o600); err != nil {
		f.Fatal(err)
	}
	name := filepath.Join(dir, "fuzz.test.yml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if leavesFolder(data) {
			t.Skip("rule_files outside the test's folder")
		}
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fuzztest.Bounded(t, data, func() error {
			RunFile(name, nil, io.Discard)
			return nil
		})
	})
}

// leavesFolder reports whether a test file's rule_files may name files
// outside its folder: absolute paths, "..", globs or "embedded:". RunFile
// allows them all; the fuzz target keeps to its folder so that it never
// reads /dev/zero or walks the disk.
func leavesFolder(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || confyaml.CheckAliases("", &doc, confyaml.MaxAliasNodes) != nil {
		return false // RunFile refuses it before reading rule files
	}
	var f struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	if doc.Decode(&f) != nil && len(doc.Content) > 0 {
		// The rule_files field may still have decoded.
		_ = doc.Content[0].Decode(&f)
	}
	for _, p := range f.RuleFiles {
		if filepath.IsAbs(p) || strings.Contains(p, "..") || strings.ContainsAny(p, `*?[\`) || strings.Contains(p, ":") {
			return true
		}
	}
	return false
}
