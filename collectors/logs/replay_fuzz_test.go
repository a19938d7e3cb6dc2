package logs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/internal/fuzztest"
)

// FuzzLoadPositions fuzzes the positions-file decoder, loadPositions
// (JSON). Oracle: fuzztest.Bounded (no panic, at most fuzztest.AllocBudget bytes
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
		fuzztest.Bounded(t, data, func() error {
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
// checksum, so the record decoder itself is reached. Oracle: fuzztest.Bounded
// (no panic, at most fuzztest.AllocBudget bytes per segment, no hang), and no
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
		fuzztest.Bounded(t, data, func() error {
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
