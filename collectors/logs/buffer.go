package logs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The disk buffer sits between the tailer and the Loki push client. The
// tailer appends one record per chunk of lines read from a file; each record
// also carries that file's read position after the chunk. The push client
// reads committed records in order, and acknowledges them once Loki has
// accepted them; whole segments below the acknowledgement are deleted.
//
// On disk: <dir>/<first seq, 20 digits>.seg files of frames
// [4-byte length][4-byte CRC-32C of the payload][payload], and <dir>/ack
// holding the last acknowledged sequence number. A torn frame at the end of
// a segment (a crash during a write) is cut off when the buffer is opened.
//
// Recycling: an acknowledged segment is not deleted but renamed to
// <dir>/<n>.free (at most maxFreeSegments of them), and the next segment is
// that file renamed and overwritten from its start. Overwriting pages the
// page cache already holds costs the kernel far less than allocating pages
// for a new file. A recycled segment holds stale frames after the ones
// written since; every stale frame has a sequence number below the
// segment's first (sequence numbers only grow, and only acknowledged
// segments are recycled), so reading stops at the first frame whose number
// is not above the previous one and not below the segment's first. Free
// files are removed when the buffer is opened.
//
// Durability: a record is written with one write(2) before the read
// position that follows it is saved, so after a SIGKILL the page cache
// holds both. With fsync on, every commit also fsyncs the segment before the
// positions file is renamed into place, so a power loss cannot leave a
// position ahead of the buffer.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// maxFreeSegments bounds the acknowledged segment files kept for reuse.
const maxFreeSegments = 4

// record is one chunk of lines from one file.
type record struct {
	seq    uint64
	path   string
	pos    filePos // read position of path after this chunk
	labels string  // Loki stream selector, e.g. {namespace="a", pod="b"}
	meta   []kv    // structured metadata common to every entry
	n      int     // number of entries encoded in ents
	ents   []byte  // entries: varint ts, stream byte, uvarint len, line
	bytes  int     // total length of the lines in ents
	// payload is the frame a cursor read the record from; ents, path,
	// labels and meta do not alias it (strings are copied), ents does.
	payload []byte
}

type kv struct{ k, v string }

func (r *record) reset() {
	r.n, r.bytes = 0, 0
	r.ents = r.ents[:0]
}

func (r *record) addEntry(ts int64, stream uint8, line []byte) {
	r.ents = binary.AppendVarint(r.ents, ts)
	r.ents = append(r.ents, stream)
	r.ents = binary.AppendUvarint(r.ents, uint64(len(line)))
	r.ents = append(r.ents, line...)
	r.n++
	r.bytes += len(line)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encode appends the frame payload of r (with or without its entries).
func (r *record) encode(b []byte, withEntries bool) []byte {
	b = binary.AppendUvarint(b, r.seq)
	b = appendString(b, r.path)
	b = binary.AppendUvarint(b, r.pos.Dev)
	b = binary.AppendUvarint(b, r.pos.Inode)
	b = binary.AppendVarint(b, r.pos.Offset)
	b = appendString(b, r.labels)
	b = binary.AppendUvarint(b, uint64(len(r.meta)))
	for _, m := range r.meta {
		b = appendString(b, m.k)
		b = appendString(b, m.v)
	}
	if !withEntries {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(r.n))
	return append(b, r.ents...)
}

var errCorrupt = errors.New("corrupt record")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// decodeRecord decodes a payload; the entries stay encoded in r.ents, which
// aliases p.
func decodeRecord(p []byte) (record, error) {
	d := decoder{b: p}
	var r record
	r.seq = d.uvarint()
	r.path = string(d.bytes())
	r.pos.Dev = d.uvarint()
	r.pos.Inode = d.uvarint()
	r.pos.Offset = d.varint()
	r.labels = string(d.bytes())
	nm := d.uvarint()
	if nm > 64 {
		return r, errCorrupt
	}
	for i := uint64(0); i < nm && d.err == nil; i++ {
		r.meta = append(r.meta, kv{string(d.bytes()), string(d.bytes())})
	}
	r.n = int(d.uvarint())
	r.ents = d.b
	return r, d.err
}

// eachEntry walks the entries of a decoded record.
func (r *record) eachEntry(fn func(ts int64, stream uint8, line []byte)) error {
	d := decoder{b: r.ents}
	for i := 0; i < r.n; i++ {
		ts := d.varint()
		if len(d.b) == 0 {
			return errCorrupt
		}
		stream := d.b[0]
		d.b = d.b[1:]
		l := d.bytes()
		if d.err != nil {
			return d.err
		}
		if stream > streamStderr {
			stream = streamNone
		}
		fn(ts, stream, l)
	}
	return nil
}

type segment struct {
	path      string
	firstSeq  uint64
	lastSeq   uint64 // 0 while empty
	size      int64
	committed int64 // bytes the push client may read
	lines     int64
}

// diskBuffer is the bounded, durable queue of records.
type diskBuffer struct {
	dir      string
	maxBytes int64
	segBytes int64
	fsync    bool
	logger   *slog.Logger

	mu        sync.Mutex
	segs      []*segment // ordered; the last one is active
	active    *os.File
	nextSeq   uint64
	committed uint64 // last seq the push client may read
	acked     uint64
	total     int64    // bytes of all segments
	free      []string // acknowledged segment files to reuse
	freeN     int      // names the next free file
	scratch   []byte
	notify    chan struct{}
	closed    bool
}

// openBuffer opens (or creates) the buffer in dir. Records after afterSeq
// are returned so that the caller can bring its read positions up to date;
// minSeq makes new sequence numbers continue after a positions file that is
// newer than the buffer (for example when the buffer folder was removed).
func openBuffer(dir string, maxBytes, segBytes int64, fsync bool, afterSeq uint64, logger *slog.Logger) (*diskBuffer, []record, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, err
	}
	b := &diskBuffer{dir: dir, maxBytes: maxBytes, segBytes: segBytes, fsync: fsync, logger: logger,
		notify: make(chan struct{}, 1)}
	if data, err := os.ReadFile(filepath.Join(dir, "ack")); err == nil {
		b.acked, err = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("buffer acknowledgement file %s: %w", filepath.Join(dir, "ack"), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, e := range entries {
		switch {
		case strings.HasSuffix(e.Name(), ".seg"):
			names = append(names, e.Name())
		case strings.HasSuffix(e.Name(), ".free"):
			// Not reused across a restart: this start's sequence
			// numbers are not checked against their stale frames.
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, nil, err
			}
		}
	}
	sort.Strings(names)
	var replay []record
	maxSeq := max(afterSeq, b.acked)
	for _, name := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			logger.Warn("ignoring unknown file in log buffer", "file", filepath.Join(dir, name))
			continue
		}
		s := &segment{path: filepath.Join(dir, name), firstSeq: first}
		recs, err := b.scan(s, afterSeq)
		if err != nil {
			return nil, nil, err
		}
		replay = append(replay, recs...)
		if s.lastSeq == 0 || s.lastSeq <= b.acked {
			os.Remove(s.path)
			continue
		}
		maxSeq = max(maxSeq, s.lastSeq)
		s.committed = s.size
		b.segs = append(b.segs, s)
		b.total += s.size
	}
	b.nextSeq = maxSeq + 1
	b.committed = maxSeq
	return b, replay, nil
}

// scan reads every frame of s, cuts a torn or corrupt tail, and returns the
// records after afterSeq (their entries are not kept).
func (b *diskBuffer) scan(s *segment, afterSeq uint64) ([]record, error) {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var out []record
	var off int64
	hdr := make([]byte, 8)
	var payload []byte
	for {
		if _, err := f.ReadAt(hdr, off); err != nil {
			if err != io.EOF {
				b.logger.Warn("log buffer segment has a torn frame header; cutting it off", "file", s.path, "offset", off)
			}
			break
		}
		n := int64(binary.LittleEndian.Uint32(hdr))
		// A length past the end of the file is a torn (or corrupt) frame:
		// refuse it before allocating its payload, so an 8-byte header
		// cannot make the agent allocate a gigabyte at start.
		if n > 1<<30 || off+8+n > st.Size() {
			b.logger.Warn("log buffer segment has a corrupt or torn frame; cutting it off", "file", s.path, "offset", off)
			break
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := f.ReadAt(payload, off+8); err != nil {
			b.logger.Warn("log buffer segment has a torn frame; cutting it off", "file", s.path, "offset", off)
			break
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			b.logger.Warn("log buffer frame fails its checksum; cutting it off", "file", s.path, "offset", off)
			break
		}
		r, err := decodeRecord(payload)
		if err != nil {
			b.logger.Warn("log buffer frame does not decode; cutting it off", "file", s.path, "offset", off)
			break
		}
		if r.seq < s.firstSeq || (s.lastSeq != 0 && r.seq <= s.lastSeq) {
			break // a stale frame of a recycled segment: the end
		}
		if r.seq > afterSeq {
			r.ents, r.n = nil, 0
			out = append(out, r)
		}
		s.lastSeq = r.seq
		if r.seq > b.acked {
			s.lines += int64(r.n)
		}
		off += 8 + n
	}
	if st.Size() > off {
		if err := f.Truncate(off); err != nil {
			return nil, err
		}
	}
	s.size = off
	return out, nil
}

// append writes r, assigning its sequence number. When the buffer is full
// the entries are left out (the caller counts them as dropped) and only the
// read position is recorded; dropped reports that.
func (b *diskBuffer) append(r *record) (dropped bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, errors.New("log buffer is closed")
	}
	withEntries := r.n > 0
	if withEntries && b.total+int64(len(r.ents))+256 > b.maxBytes {
		withEntries, dropped = false, true
	}
	r.seq = b.nextSeq
	b.scratch = append(b.scratch[:0], make([]byte, 8)...)
	b.scratch = r.encode(b.scratch, withEntries)
	payload := b.scratch[8:]
	binary.LittleEndian.PutUint32(b.scratch, uint32(len(payload)))
	binary.LittleEndian.PutUint32(b.scratch[4:], crc32.Checksum(payload, crcTable))
	s, err := b.activeSegment()
	if err != nil {
		return false, err
	}
	if _, err := b.active.WriteAt(b.scratch, s.size); err != nil {
		// A short write leaves a torn frame: cut it so the segment stays
		// readable, and let the caller retry the chunk later.
		_ = b.active.Truncate(s.size)
		return false, fmt.Errorf("writing log buffer %s: %w", s.path, err)
	}
	b.nextSeq++
	s.lastSeq = r.seq
	s.size += int64(len(b.scratch))
	if withEntries {
		s.lines += int64(r.n)
	}
	b.total += int64(len(b.scratch))
	return dropped, nil
}

// activeSegment returns the segment to append to, starting a new one when
// the current one is large enough. Called with mu held.
func (b *diskBuffer) activeSegment() (*segment, error) {
	if n := len(b.segs); n > 0 && b.active != nil && b.segs[n-1].size < b.segBytes {
		return b.segs[n-1], nil
	}
	if b.active != nil {
		if b.fsync {
			if err := b.active.Sync(); err != nil {
				return nil, err
			}
		}
		b.active.Close()
		b.active = nil
	}
	// Re-open the last segment after a restart if it has room.
	if n := len(b.segs); n > 0 && b.segs[n-1].size < b.segBytes {
		s := b.segs[n-1]
		f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		b.active = f
		return s, nil
	}
	s := &segment{path: filepath.Join(b.dir, fmt.Sprintf("%020d.seg", b.nextSeq)), firstSeq: b.nextSeq}
	f, err := b.reuse(s.path)
	if err != nil {
		return nil, err
	}
	if f == nil {
		f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return nil, err
		}
	}
	b.active = f
	b.segs = append(b.segs, s)
	return s, nil
}

// reuse renames a free file to path and opens it for overwriting; nil
// when there is none. With fsync the folder is fsynced after the rename,
// so a power loss cannot undo the rename under records a commit fsynced.
// Called with mu held.
func (b *diskBuffer) reuse(path string) (*os.File, error) {
	for len(b.free) > 0 {
		old := b.free[len(b.free)-1]
		b.free = b.free[:len(b.free)-1]
		if err := os.Rename(old, path); err != nil {
			b.logger.Warn("cannot reuse a log buffer segment file; removing it", "file", old, "err", err)
			_ = os.Remove(old)
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		if b.fsync {
			if err := syncDir(b.dir); err != nil {
				f.Close()
				return nil, err
			}
		}
		return f, nil
	}
	return nil, nil
}

// recycle keeps an acknowledged segment file for reuse, or removes it when
// enough are kept. Called with mu held.
func (b *diskBuffer) recycle(path string) error {
	if len(b.free) < maxFreeSegments {
		b.freeN++
		free := filepath.Join(b.dir, fmt.Sprintf("%d.free", b.freeN))
		if err := os.Rename(path, free); err == nil {
			b.free = append(b.free, free)
			return nil
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sync fsyncs the active segment when the buffer is configured to.
func (b *diskBuffer) sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.fsync || b.active == nil {
		return nil
	}
	return b.active.Sync()
}

// lastSeq is the sequence number of the last appended record.
func (b *diskBuffer) lastSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextSeq - 1
}

// commit lets the push client read every record up to seq, whose read
// positions are now saved.
func (b *diskBuffer) commit(seq uint64) {
	b.mu.Lock()
	b.committed = seq
	for _, s := range b.segs {
		if s.lastSeq != 0 && s.lastSeq <= seq {
			s.committed = s.size
		}
	}
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// ack records that every record up to seq is in Loki: the mark is saved
// and fully acknowledged segments are deleted.
func (b *diskBuffer) ack(seq uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq <= b.acked {
		return nil
	}
	b.acked = seq
	err := writeFileAtomic(filepath.Join(b.dir, "ack"), []byte(strconv.FormatUint(seq, 10)+"\n"), b.fsync)
	keep := b.segs[:0]
	for i, s := range b.segs {
		last := i == len(b.segs)-1
		if !last && s.lastSeq <= seq {
			if rerr := b.recycle(s.path); rerr != nil {
				err = errors.Join(err, rerr)
			}
			b.total -= s.size
			continue
		}
		keep = append(keep, s)
	}
	b.segs = keep
	return err
}

// stats returns the buffer's size in bytes and its unacknowledged lines.
func (b *diskBuffer) stats() (bytes int64, segments int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total, len(b.segs)
}

// close closes the active segment (after an fsync when configured).
func (b *diskBuffer) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.active == nil {
		return nil
	}
	var err error
	if b.fsync {
		err = b.active.Sync()
	}
	err = errors.Join(err, b.active.Close())
	b.active = nil
	return err
}

// cursor reads committed records in order for the push client.
type cursor struct {
	b     *diskBuffer
	seg   string // path of the segment being read
	first uint64
	off   int64
	f     *os.File
	after uint64 // skip records up to this seq (already acknowledged)
	hdr   [8]byte
	// free holds payload buffers the caller gave back (see recycle), reused
	// instead of allocating one per record.
	free [][]byte
}

// recycle gives back payload buffers of records the caller no longer
// references; next may reuse them.
func (c *cursor) recycle(bufs ...[]byte) {
	for _, b := range bufs {
		if len(c.free) < 32 && cap(b) > 0 {
			c.free = append(c.free, b[:0])
		}
	}
}

// payload returns a buffer of n bytes, reused when one is big enough.
func (c *cursor) payload(n int64) []byte {
	for i := len(c.free) - 1; i >= 0; i-- {
		if b := c.free[i]; int64(cap(b)) >= n {
			c.free[i] = c.free[len(c.free)-1]
			c.free = c.free[:len(c.free)-1]
			return b[:n]
		}
	}
	return make([]byte, n)
}

func (b *diskBuffer) newCursor() *cursor {
	b.mu.Lock()
	defer b.mu.Unlock()
	return &cursor{b: b, after: b.acked}
}

// next returns the next committed record, or ok=false when there is none
// yet. The record's entries alias r.payload, which the caller may keep
// until it hands it back with recycle.
func (c *cursor) next() (r record, ok bool, err error) {
	for {
		c.b.mu.Lock()
		var s *segment
		isLast := false
		for i, sg := range c.b.segs {
			if sg.firstSeq >= c.first {
				s, isLast = sg, i == len(c.b.segs)-1
				break
			}
		}
		if s == nil {
			c.b.mu.Unlock()
			return r, false, nil
		}
		limit, size := s.committed, s.size
		c.b.mu.Unlock()
		if s.firstSeq != c.first || c.seg != s.path {
			if c.f != nil {
				c.f.Close()
				c.f = nil
			}
			c.seg, c.first, c.off = s.path, s.firstSeq, 0
		}
		if c.off >= limit {
			if isLast || limit < size {
				return r, false, nil
			}
			c.first++ // this segment is read: go on with the next one
			continue
		}
		if c.f == nil {
			f, err := os.Open(s.path)
			if err != nil {
				return r, false, err
			}
			c.f = f
		}
		if _, err := c.f.ReadAt(c.hdr[:], c.off); err != nil {
			return r, false, fmt.Errorf("reading log buffer %s at %d: %w", s.path, c.off, err)
		}
		n := int64(binary.LittleEndian.Uint32(c.hdr[:]))
		payload := c.payload(n)
		if _, err := c.f.ReadAt(payload, c.off+8); err != nil {
			return r, false, fmt.Errorf("reading log buffer %s at %d: %w", s.path, c.off, err)
		}
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(c.hdr[4:]) {
			return r, false, fmt.Errorf("log buffer %s: frame at %d fails its checksum", s.path, c.off)
		}
		c.off += 8 + n
		r, err = decodeRecord(payload)
		if err != nil {
			return r, false, fmt.Errorf("log buffer %s: %w", s.path, err)
		}
		if r.seq <= c.after {
			c.recycle(payload)
			continue
		}
		r.payload = payload
		return r, true, nil
	}
}

func (c *cursor) close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}
