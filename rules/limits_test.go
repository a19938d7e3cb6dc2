package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A rule file whose aliases multiply into billions of nodes is refused
// with its file and line before rulefmt decodes it, allocating little.
func TestRuleFileAliasBombIsRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n")
	b.WriteString("x0: &x0 [{alert: B, expr: up}, {alert: B, expr: up}, {alert: B, expr: up}]\n")
	for i := 1; i <= 12; i++ {
		a := fmt.Sprintf("*x%d", i-1)
		fmt.Fprintf(&b, "x%d: &x%d [%s,%s,%s,%s,%s,%s,%s,%s,%s]\n", i, i, a, a, a, a, a, a, a, a, a)
	}
	file := filepath.Join(t.TempDir(), "bomb.rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := LoadRuleFiles(file)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.HasPrefix(err.Error(), file+": 9:") || !strings.Contains(err.Error(), "aliases expand the document") {
		t.Fatalf("LoadRuleFiles: %v, want %s: 9:…: aliases expand …", err, file)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("refusing a %d-byte file allocated %d bytes, more than 4 MiB", b.Len(), n)
	}
}

// A rule file with a hundred broken rules reports twenty of them and how
// many more there are.
func TestRuleFileErrorsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("groups:\n  - name: g\n    rules:\n")
	for i := range 100 {
		fmt.Fprintf(&b, "      - alert: A%d\n        expr: 'up ==== %d'\n", i, i)
	}
	file := filepath.Join(t.TempDir(), "bad.rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadRuleFiles(file)
	if err == nil {
		t.Fatal("a broken file loaded")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 21 || !strings.Contains(lines[20], "and 80 more problems") {
		t.Fatalf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}
