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

// `vigil rules test` moved to vigil-tool: the agent says where it went
// instead of failing as an unknown command.
func TestRulesTestMoved(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"rules", "test", "embedded:tests/*.test.yml"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "vigil-tool rules test") {
		t.Errorf("stderr = %q", errb.String())
	}
}
