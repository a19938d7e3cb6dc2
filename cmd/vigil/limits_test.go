package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `vigil config check` refuses an alias bomb under healing.policies with
// the file and line, and does not run out of memory doing it.
func TestConfigCheckRefusesAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("healing:\n  policies:\n    routes:\n      - &r0 {matchers: ['a=\"b\"']}\n")
	for k := 1; k <= 9; k++ {
		a := fmt.Sprintf("*r%d", k-1)
		fmt.Fprintf(&b, "      - &r%d {routes: [%s]}\n", k, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	path := filepath.Join(t.TempDir(), "bomb.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"config", "check", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
	}
	if !strings.HasPrefix(errb.String(), path+":8:") || !strings.Contains(errb.String(), "aliases expand the document") {
		t.Errorf("stderr = %q", errb.String())
	}
}

// `vigil rules test` refuses a series that would expand to a hundred
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
