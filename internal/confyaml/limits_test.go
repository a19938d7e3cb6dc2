package confyaml

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// laughs is a "billion laughs" document: levels of nine aliases each, so
// 9^levels leaves from a few hundred bytes, under prefix (one line per
// level, indented like its parent).
func laughs(prefix, indent string, levels int) string {
	var b strings.Builder
	b.WriteString(prefix)
	fmt.Fprintf(&b, "%sl0: &l0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n", indent)
	for i := 1; i <= levels; i++ {
		a := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "%sl%d: &l%d [%s]\n", indent, i, i, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	return b.String()
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestAliasBombIsRefusedCheaply(t *testing.T) {
	doc := laughs("healing:\n  policies:\n", "    ", 9) // 9^10 ≈ 3.5 billion nodes
	if len(doc) > 600 {
		t.Fatalf("the bomb is %d bytes; the point is that it is small", len(doc))
	}
	var err error
	n := allocated(func() { _, err = Parse("bomb.yaml", []byte(doc)) })
	var ce *Error
	if !errors.As(err, &ce) || ce.File != "bomb.yaml" || ce.Line != 7 || !strings.Contains(ce.Msg, "aliases expand the document by more than") {
		t.Fatalf("Parse: %v, want a bomb.yaml:7 alias error", err)
	}
	if !strings.HasPrefix(err.Error(), "bomb.yaml:7:14:") {
		t.Errorf("error %q does not start with file:line:", err)
	}
	if n > 4<<20 {
		t.Errorf("refusing a %d-byte bomb allocated %d bytes, more than 4 MiB", len(doc), n)
	}
}

func TestAliasToItselfIsRefused(t *testing.T) {
	_, err := Parse("loop.yaml", []byte("a: &a [1, *a]\n"))
	if err == nil {
		// yaml.v3 may already refuse it while parsing; either way it
		// must not load.
		t.Fatal("a self-referencing alias was accepted")
	}
}

func TestModestAliasesStillWork(t *testing.T) {
	doc := "m: &m ['a=\"b\"', 'c=\"d\"']\nx: *m\ny: *m\nz: [*m, *m, *m]\n"
	if _, err := Parse("ok.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

func TestLimitCapsErrors(t *testing.T) {
	var errs []error
	for i := range 50 {
		errs = append(errs, fmt.Errorf("problem %d", i))
	}
	err := Limit(errors.Join(errors.Join(errs[:25]...), errors.Join(errs[25:]...)), MaxErrors)
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxErrors+1 || lines[0] != "problem 0" || lines[MaxErrors-1] != "problem 19" ||
		lines[MaxErrors] != "… and 30 more problems (only the first 20 are shown)" {
		t.Fatalf("limited to %d lines:\n%s", len(lines), err)
	}
	// Capping an already capped list (a section's, then the file's)
	// still counts every problem.
	// The agent prefixes each problem of a section with its name.
	var prefixed []error
	for _, e := range Limit(errors.Join(errs...), MaxErrors).(interface{ Unwrap() []error }).Unwrap() {
		prefixed = append(prefixed, fmt.Errorf("section: %w", e))
	}
	twice := Limit(errors.Join(errors.Join(prefixed...), errors.New("another")), MaxErrors)
	if lines := strings.Split(twice.Error(), "\n"); len(lines) != MaxErrors+1 || lines[MaxErrors] != "… and 31 more problems (only the first 20 are shown)" {
		t.Fatalf("capped twice:\n%s", twice)
	}
	if got := Limit(errors.Join(errs[:3]...), MaxErrors); strings.Count(got.Error(), "\n") != 2 {
		t.Errorf("three problems changed: %v", got)
	}
	if Limit(nil, 1) != nil {
		t.Error("Limit(nil) is not nil")
	}
}

// Aliases that repeat a mistake do not repeat it past the cap.
func TestDecodeCapsUnknownFieldErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("x: &bad {typo: 1}\nlist:\n")
	for range 100 {
		b.WriteString("  - *bad\n")
	}
	root, err := Parse("t.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		X    struct{ A int } `yaml:"x"`
		List []struct{ A int }
	}
	err = Decode("t.yaml", "", root, &out)
	if err == nil || strings.Count(err.Error(), "\n") != MaxErrors || !strings.Contains(err.Error(), "and 81 more problems") {
		t.Fatalf("Decode: %v", err)
	}
}
