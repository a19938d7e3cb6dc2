package healing

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A policy file whose routes nest nine aliases per level (9^9 routes from
// a few hundred bytes) is refused with its file and line, allocating
// little, by the loader that config check, startup and every reload use.
func TestPolicyFileAliasBombIsRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("policies:\n  routes:\n    - &r0 {name: p, steps: [{action: exec, params: {command: [/bin/true]}}]}\n")
	for k := 1; k <= 9; k++ {
		a := fmt.Sprintf("*r%d", k-1)
		fmt.Fprintf(&b, "    - &r%d {routes: [%s]}\n", k, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	path := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.PolicyFile = path
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := cfg.Check()
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), path+":6:") || !strings.Contains(err.Error(), "aliases expand the document") {
		t.Fatalf("Check: %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("refusing the file allocated %d bytes, more than 4 MiB", n)
	}
}
