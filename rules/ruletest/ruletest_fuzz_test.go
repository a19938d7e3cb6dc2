package ruletest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/internal/confyaml"
)

// FuzzRunFile fuzzes the rule-test file decoder and runner, RunFile
// (promtool's format: input series in promqltest's expanding notation,
// alert and expression tests), beside the rule file of testdata. Oracle:
// fuzzBounded (no panic, at most fuzzAllocBudget bytes per input, no
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
		fuzzBounded(t, data, func() error {
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

// The fuzz oracle below is repeated in each package that has fuzz targets
// (test files cannot share code across packages). It runs one decode and
// fails when the decode panics, allocates more than fuzzAllocBudget for
// its input, runs past fuzzHangAfter (a hang detector, not a speed check)
// or reports a broken invariant.

// fuzzHangAfter is how long one input may run before it counts as a hang.
const fuzzHangAfter = 10 * time.Second

// fuzzAllocBudget is how many bytes decoding an input of n bytes may
// allocate: max(64 MiB, 2000 bytes per input byte). Real files stay far
// below it; alias bombs and sample-expansion bombs cross it by orders of
// magnitude.
func fuzzAllocBudget(n int) uint64 { return max(64<<20, 2000*uint64(n)) }

// fuzzBounded runs decode on an input of n bytes under the oracle.
// decode returns a non-nil error for a broken invariant.
func fuzzBounded(t testing.TB, input []byte, decode func() error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	type result struct {
		err   error
		panic any
		stack []byte
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{panic: p, stack: debug.Stack()}
			}
		}()
		done <- result{err: decode()}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(fuzzHangAfter):
		t.Fatalf("decoding a %d-byte input still runs after %s: %q", len(input), fuzzHangAfter, fuzzQuote(input))
	}
	runtime.ReadMemStats(&after)
	switch {
	case r.panic != nil:
		t.Fatalf("panic on %q: %v\n%s", fuzzQuote(input), r.panic, r.stack)
	case r.err != nil:
		t.Fatalf("on %q: %v", fuzzQuote(input), r.err)
	}
	if got, budget := after.TotalAlloc-before.TotalAlloc, fuzzAllocBudget(len(input)); got > budget {
		t.Fatalf("decoding a %d-byte input allocated %d bytes, more than %d: %q", len(input), got, budget, fuzzQuote(input))
	}
}

// fuzzQuote shortens an input for a failure message.
func fuzzQuote(b []byte) string {
	if len(b) > 512 {
		return string(b[:512]) + "…"
	}
	return string(b)
}

// fuzzDocBlocks returns the ```yaml blocks of a documentation file that
// start with prefix, as seeds.
func fuzzDocBlocks(t testing.TB, path, prefix string) [][]byte {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.HasPrefix(block, prefix) {
			out = append(out, []byte(block))
		}
	}
	return out
}

// fuzzAliasBomb is a YAML document of about 450 bytes under prefix whose
// list items nest nine aliases per level: 9^9 nodes once expanded, the
// shape of the 444-byte configuration of issue 18. indent is the
// indentation of the list items.
func fuzzAliasBomb(prefix, first, indent string) []byte {
	var b strings.Builder
	b.WriteString(prefix)
	fmt.Fprintf(&b, "%s- &r0 %s\n", indent, first)
	for k := 1; k <= 9; k++ {
		a := fmt.Sprintf("*r%d", k-1)
		fmt.Fprintf(&b, "%s- &r%d {routes: [%s]}\n", indent, k, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	return []byte(b.String())
}
