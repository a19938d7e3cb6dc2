package logs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// FuzzLoadPositions fuzzes the positions-file decoder, loadPositions
// (JSON). Oracle: fuzzBounded (no panic, at most fuzzAllocBudget bytes
// per input, no hang) and an accepted file has a non-nil file map.
func FuzzLoadPositions(f *testing.F) {
	f.Add([]byte(`{"seq":12,"files":{"/var/log/pods/a/c/0.log":{"dev":2049,"inode":1234,"offset":4096}}}`))
	f.Add([]byte(`{"seq":0,"files":null}`))
	f.Add([]byte(`{"seq":-1,"files":{"x":{"offset":"1"}}}`))
	f.Add([]byte(`{"files":{"a":{},"a":{}}}`))
	dir := f.TempDir()
	path := filepath.Join(dir, "positions.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fuzzBounded(t, data, func() error {
			p, err := loadPositions(path)
			switch {
			case err == nil && (p == nil || p.Files == nil):
				return errors.New("positions accepted without a file map")
			case err != nil && !strings.Contains(err.Error(), path):
				return fmt.Errorf("error %q does not name the file", err)
			}
			return nil
		})
	})
}

// FuzzBufferReplay fuzzes the disk buffer's replay of a segment file:
// openBuffer (frame headers, checksums, decodeRecord, torn tails), then a
// cursor reading every committed record and its entries (eachEntry). With
// framed, the input is one frame payload given a correct header and
// checksum, so the record decoder itself is reached. Oracle: fuzzBounded
// (no panic, at most fuzzAllocBudget bytes per segment, no hang), and no
// more records replayed than frames fit in the file. Seeds: a segment
// written by the buffer, torn and corrupt tails, and a frame header that
// claims a gigabyte.
func FuzzBufferReplay(f *testing.F) {
	seg := fuzzSegment(f)
	f.Add(seg, false)
	f.Add(seg[:len(seg)-3], false)
	f.Add(append(append([]byte{}, seg...), 200, 0, 0, 0, 1, 2, 3), false)
	f.Add([]byte{0, 0, 0, 0x40, 0, 0, 0, 0}, false) // a 1 GiB frame in 8 bytes
	f.Add(seg[8:], true)
	f.Add([]byte{1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, true) // entries claim 4 billion lines
	logger := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte, framed bool) {
		if framed {
			frame := make([]byte, 8, 8+len(data))
			binary.LittleEndian.PutUint32(frame, uint32(len(data)))
			binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(data, crcTable))
			data = append(frame, data...)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		fuzzBounded(t, data, func() error {
			b, replay, err := openBuffer(dir, 1<<20, 64<<10, false, 0, logger)
			if err != nil {
				return nil
			}
			defer b.close()
			if max := len(data) / 9; len(replay) > max {
				return fmt.Errorf("replayed %d records from %d bytes", len(replay), len(data))
			}
			b.commit(b.lastSeq())
			c := b.newCursor()
			defer c.close()
			for range len(data)/9 + 1 {
				r, ok, err := c.next()
				if err != nil || !ok {
					return nil
				}
				lines := 0
				_ = r.eachEntry(func(int64, uint8, []byte) { lines++ })
				if lines > len(data) {
					return fmt.Errorf("%d lines from %d bytes", lines, len(data))
				}
			}
			return errors.New("the cursor reads more records than the segment holds")
		})
	})
}

// fuzzSegment is a segment file written by the buffer: three records.
func fuzzSegment(f *testing.F) []byte {
	dir := f.TempDir()
	b, _, err := openBuffer(dir, 1<<20, 64<<10, false, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	for i := range 3 {
		r := &record{path: "/var/log/pods/ns_p_uid/c/0.log", pos: filePos{Dev: 1, Inode: 2, Offset: int64(100 * (i + 1))},
			labels: `{namespace="ns", pod="p"}`, meta: []kv{{"filename", "/var/log/pods/ns_p_uid/c/0.log"}}}
		r.addEntry(int64(i+1), streamStdout, []byte("level=info msg=hello"))
		r.addEntry(int64(i+2), streamStderr, []byte("error: boom"))
		if _, err := b.append(r); err != nil {
			f.Fatal(err)
		}
	}
	if err := b.close(); err != nil {
		f.Fatal(err)
	}
	seg, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)))
	if err != nil {
		f.Fatal(err)
	}
	return seg
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
