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
