package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// routeBomb is a healing section whose routes nest nine aliases per level:
// about 600 bytes that stand for 9^9 routes, like the 444-byte file that
// made `vigil config check` run out of memory. The first alias that
// crosses the budget is on line 8.
func routeBomb() string {
	var b strings.Builder
	b.WriteString("healing:\n  policies:\n    routes:\n      - &r0 {matchers: ['a=\"b\"']}\n")
	for k := 1; k <= 9; k++ {
		a := fmt.Sprintf("*r%d", k-1)
		fmt.Fprintf(&b, "      - &r%d {routes: [%s]}\n", k, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	return b.String()
}

func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The alias bomb under healing.policies is refused by the loader that
// `vigil config check` and every reload use, with file and line, in a few
// MB.
func TestConfigAliasBombIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bomb.yaml")
	writeFile(t, path, routeBomb())
	var err error
	n := allocatedBy(func() { _, err = LoadFile(path) })
	if err == nil || !strings.HasPrefix(err.Error(), path+":8:") || !strings.Contains(err.Error(), "aliases expand the document") {
		t.Fatalf("LoadFile: %v, want %s:8:…: aliases expand …", err, path)
	}
	if n > 8<<20 {
		t.Errorf("refusing the bomb allocated %d bytes, more than 8 MiB", n)
	}
}

// A reload that reads the bomb fails with the same error and keeps the
// running configuration.
func TestReloadRefusesAliasBomb(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, "log: {level: info}\n")
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{ConfigFile: path, ListenAddress: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, routeBomb())
	n := allocatedBy(func() { err = a.Reload(context.Background()) })
	if err == nil || !strings.Contains(err.Error(), path+":8:") {
		t.Fatalf("Reload: %v", err)
	}
	if n > 8<<20 {
		t.Errorf("the refused reload allocated %d bytes", n)
	}
	if a.Config() != cfg {
		t.Error("the running configuration changed")
	}
}

// Problems are capped: config check, the reload log and the /-/reload
// reply print at most twenty of them and the count of the rest.
func TestConfigErrorsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("healing:\n  policies:\n    routes:\n")
	for i := range 60 {
		fmt.Fprintf(&b, "      - {name: p%d, steps: [{action: no_such_action}]}\n", i)
	}
	path := filepath.Join(t.TempDir(), "many.yaml")
	writeFile(t, path, b.String())
	_, err := LoadFile(path)
	if err == nil {
		t.Fatal("loaded")
	}
	msg := err.Error()
	if got := strings.Count(msg, "unknown action"); got != 20 {
		t.Errorf("%d problems shown, want 20:\n%s", got, msg)
	}
	if !strings.Contains(msg, "… and 40 more problems") {
		t.Errorf("no summary of the rest:\n%s", msg)
	}
}
