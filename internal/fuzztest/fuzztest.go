// Package fuzztest is the oracle Vigil's fuzz targets share: it runs one
// decode of outside input and fails when the decode panics, allocates more
// than AllocBudget for its input, runs past HangAfter (a hang detector, not
// a speed check) or reports a broken invariant; plus seed helpers.
package fuzztest

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// HangAfter is how long one input may run before it counts as a hang.
const HangAfter = 10 * time.Second

// AllocBudget is how many bytes decoding an input of n bytes may
// allocate: max(64 MiB, 2000 bytes per input byte). Real files stay far
// below it; alias bombs and sample-expansion bombs cross it by orders of
// magnitude.
func AllocBudget(n int) uint64 { return max(64<<20, 2000*uint64(n)) }

// Bounded runs decode on an input of n bytes under the oracle.
// decode returns a non-nil error for a broken invariant.
func Bounded(t testing.TB, input []byte, decode func() error) {
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
	case <-time.After(HangAfter):
		t.Fatalf("decoding a %d-byte input still runs after %s: %q", len(input), HangAfter, Quote(input))
	}
	runtime.ReadMemStats(&after)
	switch {
	case r.panic != nil:
		t.Fatalf("panic on %q: %v\n%s", Quote(input), r.panic, r.stack)
	case r.err != nil:
		t.Fatalf("on %q: %v", Quote(input), r.err)
	}
	if got, budget := after.TotalAlloc-before.TotalAlloc, AllocBudget(len(input)); got > budget {
		t.Fatalf("decoding a %d-byte input allocated %d bytes, more than %d: %q", len(input), got, budget, Quote(input))
	}
}

// Quote shortens an input for a failure message.
func Quote(b []byte) string {
	if len(b) > 512 {
		return string(b[:512]) + "…"
	}
	return string(b)
}

// DocBlocks returns the ```yaml blocks of a documentation file that
// start with prefix, as seeds.
func DocBlocks(t testing.TB, path, prefix string) [][]byte {
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

// AliasBomb is a YAML document of about 450 bytes under prefix whose
// list items nest nine aliases per level: 9^9 nodes once expanded, the
// shape of the 444-byte configuration of issue 18. indent is the
// indentation of the list items.
func AliasBomb(prefix, first, indent string) []byte {
	var b strings.Builder
	b.WriteString(prefix)
	fmt.Fprintf(&b, "%s- &r0 %s\n", indent, first)
	for k := 1; k <= 9; k++ {
		a := fmt.Sprintf("*r%d", k-1)
		fmt.Fprintf(&b, "%s- &r%d {routes: [%s]}\n", indent, k, strings.Join([]string{a, a, a, a, a, a, a, a, a}, ","))
	}
	return []byte(b.String())
}
