package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// FuzzLoadBounded fuzzes the agent configuration decoder, Load (YAML with
// every section, healing.policies included), under the oracle of
// fuzzBounded: no panic, at most fuzzAllocBudget bytes allocated per
// input, no hang, and an accepted configuration validates. Seeds: the
// embedded default, every YAML example of docs/ and the 444-byte alias
// bomb under healing.policies (issue 18).
func FuzzLoadBounded(f *testing.F) {
	f.Add(DefaultConfigYAML)
	docs, _ := filepath.Glob("../docs/*.md")
	for _, d := range append(docs, "../README.md") {
		for _, b := range fuzzDocBlocks(f, d, "") {
			f.Add(b)
		}
	}
	f.Add(fuzzAliasBomb("healing:\n  policies:\n    routes:\n", "{matchers: ['a=\"b\"']}", "      "))
	f.Add([]byte("healing:\n  policies: &p {routes: [*p]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBounded(t, data, func() error {
			c, err := Load("fuzz.yaml", data)
			if err != nil {
				if c != nil {
					return fmt.Errorf("Load returned a configuration with the error %v", err)
				}
				return nil
			}
			if err := c.Validate(); err != nil {
				return fmt.Errorf("Load accepted a configuration that does not validate: %v", err)
			}
			return nil
		})
	})
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
