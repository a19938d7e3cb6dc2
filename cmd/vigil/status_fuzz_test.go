package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzRecord is one remediation record as /api/v1/actions writes it.
const fuzzRecord = `{"id":7,"time":"2026-12-03T07:00:00Z","incident":"i-1","policy":"clean-tmp","step":0,"action":"exec","target":{"node":"n1"},"args":{"command":["/bin/true"]},"alert":"DiskFull","alert_labels":{"alertname":"DiskFull","instance":"n1"},"result":"success","dry_run":false,"duration_seconds":0.01,"node":"n1","agent":"n1"}`

// FuzzStatusStream fuzzes the decoders of `vigil status`: the event
// stream of `vigil status --follow` (followOnce: Server-Sent Events lines,
// each record JSON) and the one-shot answer (runStatus: an
// ActionsResponse), both served by a test server with the fuzzed body.
// Oracle: fuzzBounded (no panic, at most fuzzAllocBudget bytes per body,
// no hang) and runStatus exits 0 or 1.
func FuzzStatusStream(f *testing.F) {
	f.Add([]byte("event: action\ndata: " + fuzzRecord + "\n\n: keep-alive\n\ndata: " + strings.Replace(fuzzRecord, `"id":7`, `"id":8`, 1) + "\n\n"))
	f.Add([]byte(`{"paused":true,"dry_run":true,"agent":"n1","actions":[` + fuzzRecord + `]}`))
	f.Add([]byte("data: {\"id\":1,\"time\":\"x\"}\ndata: null\ndata: \ndata: [1,2]\n"))
	f.Add([]byte("data: " + strings.Repeat("a", 70<<10) + "\n"))
	var mu sync.Mutex
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		b := body
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	u, err := actionsURL(srv.URL, 10)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mu.Lock()
		body = data
		mu.Unlock()
		fuzzBounded(t, data, func() error {
			var last printed
			if streamed, _ := followOnce(u, "", &last, statusTable(io.Discard), io.Discard); !streamed {
				return fmt.Errorf("a 200 answer was not taken for a stream")
			}
			if code := runStatus(srv.URL, 10, "", io.Discard, io.Discard); code != 0 && code != 1 {
				return fmt.Errorf("runStatus exited %d", code)
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
