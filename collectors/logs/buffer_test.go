package logs

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func testRecord(path string, off int64, lines ...string) *record {
	r := &record{path: path, pos: filePos{Dev: 1, Inode: 2, Offset: off}, labels: `{job="x"}`,
		meta: []kv{{"filename", path}}}
	for i, l := range lines {
		r.addEntry(int64(i+1), streamStdout, []byte(l))
	}
	return r
}

func readAll(t *testing.T, b *diskBuffer) []record {
	t.Helper()
	c := b.newCursor()
	defer c.close()
	var out []record
	for {
		r, ok, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, r)
	}
}

func entries(t *testing.T, r record) []string {
	t.Helper()
	var out []string
	if err := r.eachEntry(func(_ int64, _ uint8, l []byte) { out = append(out, string(l)) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBufferCommitAckAndSegments(t *testing.T) {
	dir := t.TempDir()
	b, replay, err := openBuffer(dir, 1<<20, 64<<10, true, 0, slog.New(slog.DiscardHandler))
	if err != nil || len(replay) != 0 {
		t.Fatal(err, replay)
	}
	big := strings.Repeat("y", 20<<10)
	for i := range 10 {
		if dropped, err := b.append(testRecord("/f", int64(i), fmt.Sprint("line ", i), big)); err != nil || dropped {
			t.Fatal(err, dropped)
		}
	}
	if got := readAll(t, b); len(got) != 0 {
		t.Fatalf("read %d uncommitted records", len(got))
	}
	b.commit(b.lastSeq())
	got := readAll(t, b)
	if len(got) != 10 {
		t.Fatalf("read %d records, want 10", len(got))
	}
	if e := entries(t, got[3]); e[0] != "line 3" || got[3].pos.Offset != 3 {
		t.Errorf("record 3 = %v at %d", e[0], got[3].pos.Offset)
	}
	_, segs := b.stats()
	if segs < 3 {
		t.Fatalf("%d segments, want several (64 KiB each)", segs)
	}
	if err := b.ack(got[9].seq); err != nil {
		t.Fatal(err)
	}
	if _, s := b.stats(); s != 1 {
		t.Errorf("%d segments after acknowledging everything, want only the active one", s)
	}
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	// Re-opened, nothing is left to ship.
	b, _, err = openBuffer(dir, 1<<20, 64<<10, true, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if got := readAll(t, b); len(got) != 0 {
		t.Errorf("%d acknowledged records shipped again", len(got))
	}
	if b.lastSeq() < 10 {
		t.Errorf("sequence numbers restart at %d", b.lastSeq())
	}
}

// A crash after a buffer write but before the positions write: on open,
// the records after the positions' seq are replayed so the positions catch
// up, and a torn frame at the end is cut off.
func TestBufferRecoveryReplayAndTornTail(t *testing.T) {
	dir := t.TempDir()
	b, _, err := openBuffer(dir, 1<<20, 1<<20, false, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := b.append(testRecord("/f", int64(100*(i+1)), fmt.Sprint("l", i))); err != nil {
			t.Fatal(err)
		}
	}
	b.close()
	seg := filepath.Join(dir, fmt.Sprintf("%020d.seg", 1))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3}) // a torn frame
	f.Close()
	// Positions were saved after record 2.
	b, replay, err := openBuffer(dir, 1<<20, 1<<20, false, 2, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if len(replay) != 3 || replay[2].pos.Offset != 500 || replay[0].seq != 3 {
		t.Fatalf("replay = %+v", replay)
	}
	b.commit(b.lastSeq())
	if got := readAll(t, b); len(got) != 5 {
		t.Errorf("read %d records after recovery, want 5", len(got))
	}
	if _, err := b.append(testRecord("/f", 600, "after")); err != nil {
		t.Fatal(err)
	}
	b.commit(b.lastSeq())
	if got := readAll(t, b); len(got) != 6 || entries(t, got[5])[0] != "after" {
		t.Errorf("append after a cut tail: %d records", len(got))
	}
}

func TestBufferBound(t *testing.T) {
	b, _, err := openBuffer(t.TempDir(), 128<<10, 64<<10, false, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	drops := 0
	for i := range 20 {
		r := testRecord("/f", int64(i), strings.Repeat("z", 10<<10))
		dropped, err := b.append(r)
		if err != nil {
			t.Fatal(err)
		}
		if dropped {
			drops++
		}
	}
	total, _ := b.stats()
	if total > 128<<10 {
		t.Errorf("buffer grew to %d bytes, bound 128 KiB", total)
	}
	if drops < 5 {
		t.Errorf("%d records dropped, want the ones past the bound", drops)
	}
	// Position-only records keep the positions moving.
	b.commit(b.lastSeq())
	got := readAll(t, b)
	if len(got) != 20 || got[19].n != 0 || got[19].pos.Offset != 19 {
		t.Errorf("last record: n=%d offset=%d of %d", got[len(got)-1].n, got[len(got)-1].pos.Offset, len(got))
	}
}

// Readers of the positions file never see a partial write.
func TestPositionsAtomicWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "positions.json")
	p := &positions{Files: map[string]filePos{}}
	for i := range 200 {
		p.Files[fmt.Sprintf("/var/log/pods/ns_pod-%d_uid/c/0.log", i)] = filePos{Inode: uint64(i), Offset: int64(i)}
	}
	if err := p.save(path, false); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			var q positions
			if err := json.Unmarshal(data, &q); err != nil || len(q.Files) != 200 {
				t.Errorf("reader saw a partial positions file (%d bytes): %v", len(data), err)
				return
			}
		}
	})
	for i := range 300 {
		p.Seq = uint64(i)
		if err := p.save(path, i%50 == 0); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	q, err := loadPositions(path)
	if err != nil || q.Seq != 299 {
		t.Errorf("loaded seq %d, err %v", q.Seq, err)
	}
	os.WriteFile(path, []byte("{broken"), 0o600)
	if _, err := loadPositions(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt positions file: err = %v, want one naming the file", err)
	}
}

// TestCursorRecyclesPayloads checks that a frame handed back with recycle
// is reused for a later record, and that the record read into it is intact.
func TestCursorRecyclesPayloads(t *testing.T) {
	b, _, err := openBuffer(t.TempDir(), 1<<20, 64<<10, false, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := b.append(testRecord("/f", int64(i), fmt.Sprint("line ", i), strings.Repeat("z", 100-i))); err != nil {
			t.Fatal(err)
		}
	}
	b.commit(b.lastSeq())
	c := b.newCursor()
	defer c.close()
	first, ok, err := c.next()
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if got := entries(t, first); got[0] != "line 0" {
		t.Fatalf("first record: %q", got)
	}
	c.recycle(first.payload)
	second, ok, err := c.next()
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if &second.payload[0] != &first.payload[:1][0] {
		t.Error("the recycled frame was not reused")
	}
	if got := entries(t, second); len(got) != 2 || got[0] != "line 1" || got[1] != strings.Repeat("z", 99) {
		t.Errorf("second record read into the recycled frame: %q", got)
	}
	// Not recycled: the third record gets its own frame and the second
	// stays intact.
	third, ok, err := c.next()
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if &third.payload[0] == &second.payload[0] {
		t.Error("a frame still in use was reused")
	}
	if got := entries(t, second); got[0] != "line 1" {
		t.Errorf("second record changed: %q", got)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// Acknowledged segments are renamed and overwritten rather than deleted and
// created. A recycled segment still holds the stale frames of its previous
// use after the new ones (here aligned to frame boundaries: old and new
// records have the same size, so the stale frames are whole and pass their
// checksums): a restart (as after a SIGKILL, the buffer not closed) must
// replay and ship only the new records.
func TestBufferRecyclesSegments(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	b, _, err := openBuffer(dir, 1<<20, 64<<10, false, 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("s", 20<<10)
	for i := range 12 {
		if _, err := b.append(testRecord("/f", int64(i), fmt.Sprintf("old %02d", i), big)); err != nil {
			t.Fatal(err)
		}
	}
	b.commit(b.lastSeq())
	old := readAll(t, b)
	acked := old[len(old)-1].seq
	if err := b.ack(acked); err != nil {
		t.Fatal(err)
	}
	free, _ := filepath.Glob(filepath.Join(dir, "*.free"))
	if len(free) < 2 || len(free) > maxFreeSegments {
		t.Fatalf("%d free segment files after acknowledging 12 records of 20 KiB in 64 KiB segments: %v", len(free), free)
	}
	freeInodes := map[uint64]bool{}
	for _, p := range free {
		freeInodes[inode(t, p)] = true
	}
	// New records of the old ones' size until one lands in a recycled file.
	var want []string
	var lastOff int64
	for i := 0; ; i++ {
		lastOff = int64(20 + i)
		line := fmt.Sprintf("new %02d", i)
		if _, err := b.append(testRecord("/f", lastOff, line, big)); err != nil {
			t.Fatal(err)
		}
		want = append(want, line, big)
		b.mu.Lock()
		last := b.segs[len(b.segs)-1]
		b.mu.Unlock()
		if freeInodes[inode(t, last.path)] {
			if st, err := os.Stat(last.path); err != nil || st.Size() <= last.size {
				t.Fatalf("recycled segment %s: %v, size %d, want stale frames after %d", last.path, err, st.Size(), last.size)
			}
			break
		}
		if i > 20 {
			t.Fatal("no segment reused a free file")
		}
	}
	b.commit(b.lastSeq())
	got := readAll(t, b)
	var lines []string
	for _, r := range got {
		lines = append(lines, entries(t, r)...)
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("read %d lines before the restart, want %d", len(lines), len(want))
	}
	// Restart without closing: positions saved up to the acknowledgement.
	b2, replay, err := openBuffer(dir, 1<<20, 64<<10, false, acked, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.close()
	defer b.close()
	if len(replay) != len(got) || replay[len(replay)-1].pos.Offset != lastOff {
		t.Fatalf("replayed %d records (last at %d), want %d ending at %d", len(replay), replay[len(replay)-1].pos.Offset, len(got), lastOff)
	}
	b2.commit(b2.lastSeq())
	lines = nil
	for _, r := range readAll(t, b2) {
		if r.seq <= acked {
			t.Fatalf("record %d (acknowledged) read again", r.seq)
		}
		lines = append(lines, entries(t, r)...)
	}
	if !slices.Equal(lines, want) {
		t.Errorf("read %d lines after the restart, want %d (stale frames of a recycled segment?)", len(lines), len(want))
	}
	if free, _ := filepath.Glob(filepath.Join(dir, "*.free")); len(free) != 0 {
		t.Errorf("free files left after open: %v", free)
	}
	if b2.lastSeq() != b.lastSeq() {
		t.Errorf("sequence numbers continue at %d, want %d", b2.lastSeq()+1, b.lastSeq()+1)
	}
}
