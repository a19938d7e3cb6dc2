package ruletest

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestCountSamples(t *testing.T) {
	for _, c := range []struct {
		values string
		want   uint64
	}{
		{"1 0 0 1", 4},
		{"1x6", 7},
		{"0+1x100000000", 100000001},
		{"_x3 stale 1-1x2", 3 + 1 + 1 + 3},
		{"{{schema:0 sum:5 count:4 buckets:[1 2 1]}}x3 {{count:1}}", 4 + 1},
		{"{{schema:0 sum:5 count:4 buckets:[1 2 1]}}+{{schema:0 sum:1 count:1 buckets:[1]}}x9", 10},
		{"1x99999999999999999999999", math.MaxUint64},
		{"", 0},
	} {
		if got := countSamples(c.values); got != c.want {
			t.Errorf("countSamples(%q) = %d, want %d", c.values, got, c.want)
		}
	}
}

// `vigil rules test` with a series that would expand to a hundred million
// samples fails at once, naming the file and line, instead of building
// them.
func TestSeriesExpansionIsBounded(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.yml"), []byte("groups: [{name: g, rules: [{record: r, expr: up}]}]\n"), 0o644)
	file := filepath.Join(dir, "huge.test.yml")
	os.WriteFile(file, []byte(`rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="a"}'
        values: '1 1 1'
      - series: 'up{job="b"}'
        values: '0+1x100000000'
    promql_expr_test:
      - expr: up
        eval_time: 1m
        exp_samples: []
`), 0o644)
	var out, errOut bytes.Buffer
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ok := Run(&out, &errOut, Options{}, file)
	runtime.ReadMemStats(&after)
	if ok {
		t.Fatal("the file passed")
	}
	want := file + `:8:17: input_series.values: series up{job="b"} expands to 100000001 samples, more than the 100000 a test series may have`
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("output:\n%s\nwant %q", errOut.String(), want)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("refusing the file allocated %d bytes", n)
	}
}

func TestTestFileAliasBombIsRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bomb.test.yml")
	var b strings.Builder
	b.WriteString("rule_files: []\ns0: &s0 [{series: up, values: '1x99999'}, {series: up, values: '1x99999'}]\n")
	for i := 1; i <= 10; i++ {
		a := fmt.Sprintf("*s%d", i-1)
		fmt.Fprintf(&b, "s%d: &s%d [%s]\n", i, i, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	os.WriteFile(file, []byte(b.String()), 0o644)
	errs := RunFile(file, nil, &bytes.Buffer{})
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), file+":") || !strings.Contains(errs[0].Error(), "aliases expand the document") {
		t.Fatalf("errors: %v", errs)
	}
}

// A test group that would evaluate its rules billions of times is refused
// before it starts.
func TestEvaluationStepsAreBounded(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.yml"), []byte("groups: [{name: g, rules: [{record: r, expr: up}]}]\n"), 0o644)
	file := filepath.Join(dir, "long.test.yml")
	os.WriteFile(file, []byte(`rule_files: [rules.yml]
evaluation_interval: 1ms
tests:
  - name: forever
    input_series: [{series: up, values: '1'}]
    promql_expr_test: [{expr: up, eval_time: 1000h, exp_samples: []}]
`), 0o644)
	errs := RunFile(file, nil, &bytes.Buffer{})
	want := file + `: tests[0] "forever": evaluating every 1ms up to eval_time 1000h0m0s is 3600000001 rule evaluations, more than the 100000 a test may run`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Fatalf("errors: %v\nwant %s", errs, want)
	}
}
