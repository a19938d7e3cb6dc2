package logs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/vigil-agent/vigil/collectors/workload"
)

const (
	readBufSize   = 256 << 10
	readBudget    = 1 << 20 // bytes read from one file before moving to the next
	idleCloseWait = 5 * time.Second
)

// source is how a set of files is read.
type source struct {
	format    string
	labels    []kv // stream labels from the input (and loki.labels)
	multiline MultilineConfig
	pods      bool
	exclude   []string
}

// tailFile is one followed file.
type tailFile struct {
	path   string
	src    *source
	f      *os.File
	pos    filePos // Offset is the read offset
	format string

	lineStart int64 // offset of the first byte of acc
	acc       []byte
	accTrunc  bool
	asm       *assembler

	id     workload.Identity
	wl     *workloadCounters
	labels string
	meta   []kv

	emit emitFunc // see emitFor

	saved     filePos // position last recorded
	lastRead  time.Time
	lastCheck time.Time
	goneSince time.Time
	seen      bool
}

// tailer follows files; it runs on one goroutine.
type tailer struct {
	c      *Collector
	cfg    *Config
	logger *slog.Logger
	node   string
	pos    *positions
	buf    *diskBuffer
	fwd    *forwarder

	sources []*source
	pods    *source
	files   map[string]*tailFile
	order   []*tailFile
	open    int
	rbuf    []byte
	rec     record
	cur     *tailFile
	dirty   bool
	lastSav time.Time
	saveErr bool

	// per-chunk counters, added to the metrics once per chunk
	nLines, nBytes int
	// chunkNow is the clock read once per chunk (begin); lines without a
	// timestamp of their own are stamped nextTs, which starts at chunkNow
	// and goes up by 1 ns per line, so they keep their order in Loki
	// without a clock read per line.
	chunkNow time.Time
	nextTs   int64
}

func newTailer(c *Collector, pos *positions) *tailer {
	t := &tailer{c: c, cfg: c.cfg, logger: c.logger, node: nodeName(c.set), pos: pos,
		files: map[string]*tailFile{}, rbuf: make([]byte, readBufSize)}
	static := c.cfg.Loki.Labels
	for _, in := range c.cfg.Inputs {
		l := map[string]string{}
		for k, v := range static {
			l[k] = v
		}
		for k, v := range in.Labels {
			l[k] = v
		}
		f := in.Format
		if f == "" {
			f = FormatAuto
		}
		t.sources = append(t.sources, &source{format: f, labels: mapKVs(l), multiline: in.Multiline, exclude: in.Exclude})
	}
	if c.cfg.PodLogs.Enabled {
		l := map[string]string{}
		for k, v := range static {
			l[k] = v
		}
		for k, v := range c.cfg.PodLogs.Labels {
			l[k] = v
		}
		t.pods = &source{format: c.cfg.PodLogs.Format, labels: mapKVs(l), multiline: c.cfg.PodLogs.Multiline, pods: true}
	}
	return t
}

// podIdentity reads namespace, pod, UID and container from
// <dir>/<namespace>_<pod>_<uid>/<container>/<n>.log.
func podIdentity(dir, path string) (workload.Identity, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return workload.Identity{}, false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) != 3 {
		return workload.Identity{}, false
	}
	ns, rest, ok := strings.Cut(parts[0], "_")
	if !ok {
		return workload.Identity{}, false
	}
	pod, uid, ok := strings.Cut(rest, "_")
	if !ok || ns == "" || pod == "" || uid == "" {
		return workload.Identity{}, false
	}
	return workload.Identity{Namespace: ns, Pod: pod, PodUID: uid, Container: parts[1]}, true
}

// scan expands the globs and starts following new files. At start-up
// (initial) a file without a saved position starts at start_at.
func (t *tailer) scan(initial bool) {
	found := map[string]*source{}
	var paths []string
	for i, in := range t.cfg.Inputs {
		src := t.sources[i]
		for _, g := range in.Paths {
			matches, _ := filepath.Glob(g) // patterns are validated
			for _, m := range matches {
				if _, dup := found[m]; dup || excluded(m, src.exclude) {
					continue
				}
				found[m] = src
				paths = append(paths, m)
			}
		}
	}
	if t.pods != nil {
		matches, _ := filepath.Glob(filepath.Join(t.cfg.PodLogs.Dir, "*", "*", "*.log"))
		for _, m := range matches {
			if _, dup := found[m]; !dup {
				found[m] = t.pods
				paths = append(paths, m)
			}
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		if _, ok := t.files[p]; !ok {
			t.add(p, found[p], initial)
		}
	}
	// Forget files that are gone and not open (open ones are drained first
	// by checkRotation).
	for p, f := range t.files {
		if _, ok := found[p]; !ok && f.f == nil {
			t.forget(f)
		}
	}
	t.c.m.filesTracked.Set(float64(len(t.files)))
}

func excluded(p string, globs []string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, p); ok {
			return true
		}
	}
	return false
}

func statIDs(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

func (t *tailer) add(path string, src *source, initial bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	dev, ino := statIDs(fi)
	f := &tailFile{path: path, src: src, format: src.format, asm: newAssembler(t.cfg.MaxLineBytes, src.multiline)}
	f.pos = filePos{Dev: dev, Inode: ino}
	if saved, ok := t.pos.Files[path]; ok && saved.Inode == ino && saved.Dev == dev {
		f.pos.Offset = saved.Offset
		if fi.Size() < saved.Offset {
			f.pos.Offset = 0 // truncated while we were not running
			t.c.m.rotations.WithLabelValues("truncate").Inc()
		}
	} else if initial && t.cfg.StartAt == "end" {
		f.pos.Offset = fi.Size()
	}
	f.lineStart = f.pos.Offset
	f.saved = f.pos
	var extra []kv
	if src.pods {
		id, ok := podIdentity(t.cfg.PodLogs.Dir, path)
		if !ok {
			return
		}
		t.c.set.Enricher.Enrich(&id)
		f.id = id
		extra = []kv{{"namespace", id.Namespace}, {"pod", id.Pod}, {"container", id.Container}}
		f.meta = []kv{{"filename", path}, {"pod_uid", id.PodUID}}
	} else {
		f.meta = []kv{{"filename", path}}
	}
	labels := append([]kv{{"node", t.node}}, extra...)
	for _, l := range src.labels {
		if !hasKey(labels, l.k) {
			labels = append(labels, l)
		}
	}
	f.labels = lokiLabels(labels)
	f.wl = t.c.d.attach(f.id)
	f.seen = true
	t.files[path] = f
	t.order = append(t.order, f)
	t.pos.Files[path] = f.pos
}

func hasKey(l []kv, k string) bool {
	for _, p := range l {
		if p.k == k {
			return true
		}
	}
	return false
}

func (t *tailer) forget(f *tailFile) {
	if f.f != nil {
		f.f.Close()
		f.f = nil
		t.open--
	}
	t.c.d.detach(f.wl)
	delete(t.files, f.path)
	delete(t.pos.Files, f.path)
	for i, o := range t.order {
		if o == f {
			t.order = append(t.order[:i], t.order[i+1:]...)
			break
		}
	}
	t.dirty = true
}

// run is the tailer loop.
func (t *tailer) run(ctx context.Context) {
	nextScan := now().Add(t.cfg.ScanInterval)
	for ctx.Err() == nil {
		n := now()
		if !n.Before(nextScan) {
			t.scan(false)
			nextScan = n.Add(t.cfg.ScanInterval)
		}
		active := t.pass(n)
		if n.Sub(t.lastSav) >= t.cfg.CommitInterval {
			t.commit()
		}
		if !active {
			select {
			case <-ctx.Done():
			case <-time.After(t.cfg.PollInterval):
			}
		}
	}
	t.commit()
	if t.fwd != nil {
		t.fwd.close()
	}
}

// pass reads what is new in every file once; it reports whether any data
// was read.
func (t *tailer) pass(n time.Time) bool {
	active := false
	waiting := 0
	for i := 0; i < len(t.order); i++ {
		f := t.order[i]
		if f.f == nil {
			if !t.wantsOpen(f) {
				continue
			}
			if t.open >= t.cfg.MaxOpenFiles && !t.closeIdle(n) {
				waiting++
				continue
			}
			t.openFile(f)
			if f.f == nil {
				continue
			}
		}
		read := t.read(f, readBudget)
		if read > 0 {
			active = true
			f.lastRead = n
		}
		if read < readBudget && n.Sub(f.lastCheck) >= t.cfg.PollInterval {
			f.lastCheck = n
			if t.checkRotation(f, n) {
				i-- // forgotten: t.order shifted
				continue
			}
		}
		if f.asm.ml != nil {
			t.begin(f)
			f.asm.flushIdle(n, t.emitFor(f))
			t.end(f)
		}
	}
	t.c.m.filesOpen.Set(float64(t.open))
	t.c.m.filesWaiting.Set(float64(waiting))
	if t.buf != nil {
		b, s := t.buf.stats()
		t.c.m.bufferBytes.Set(float64(b))
		t.c.m.bufferSegs.Set(float64(s))
	}
	return active
}

// wantsOpen reports whether a closed file has something to read.
func (t *tailer) wantsOpen(f *tailFile) bool {
	fi, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	dev, ino := statIDs(fi)
	return dev != f.pos.Dev || ino != f.pos.Inode || fi.Size() != f.pos.Offset
}

// closeIdle closes one open file that had no data for a while, to make
// room under max_open_files.
func (t *tailer) closeIdle(n time.Time) bool {
	for _, f := range t.order {
		if f.f != nil && n.Sub(f.lastRead) >= idleCloseWait {
			f.f.Close()
			f.f = nil
			t.open--
			return true
		}
	}
	return false
}

func (t *tailer) openFile(f *tailFile) {
	fh, err := os.Open(f.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			t.c.m.readErrors.Inc()
			t.logger.Warn("cannot open log file", "file", f.path, "err", err)
		}
		return
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		t.c.m.readErrors.Inc()
		return
	}
	dev, ino := statIDs(fi)
	if dev != f.pos.Dev || ino != f.pos.Inode {
		// Replaced while closed: a new file from its start.
		t.c.m.rotations.WithLabelValues("rename").Inc()
		t.restart(f, filePos{Dev: dev, Inode: ino})
	} else if fi.Size() < f.pos.Offset {
		t.c.m.rotations.WithLabelValues("truncate").Inc()
		t.restart(f, filePos{Dev: dev, Inode: ino})
	}
	if _, err := fh.Seek(f.pos.Offset, io.SeekStart); err != nil {
		fh.Close()
		t.c.m.readErrors.Inc()
		return
	}
	f.f = fh
	f.lastRead = now()
	t.open++
}

// restart makes f read a new file (or a truncated one) from offset 0,
// emitting whatever the old one still held back.
func (t *tailer) restart(f *tailFile, p filePos) {
	t.begin(f)
	emit := t.emitFor(f)
	if len(f.acc) > 0 {
		t.line(f, f.acc, f.accTrunc, f.lineStart, f.pos.Offset)
	}
	f.asm.flushAll(emit)
	f.acc, f.accTrunc = f.acc[:0], false
	f.lineStart = f.pos.Offset
	t.end(f)
	p.Offset = 0
	f.pos = p
	f.lineStart = 0
	f.format = f.src.format
	t.pos.Files[f.path] = p
	f.saved = p
	t.dirty = true
}

// checkRotation notices truncation (copytruncate), replacement (rename and
// create) and removal of an open file at EOF. It reports whether f was
// forgotten.
func (t *tailer) checkRotation(f *tailFile, n time.Time) bool {
	if fi, err := f.f.Stat(); err == nil && fi.Size() < f.pos.Offset {
		t.c.m.rotations.WithLabelValues("truncate").Inc()
		t.restart(f, f.pos)
		if _, err := f.f.Seek(0, io.SeekStart); err != nil {
			t.c.m.readErrors.Inc()
		}
		return false
	}
	fi, err := os.Stat(f.path)
	if err != nil {
		if f.goneSince.IsZero() {
			f.goneSince = n
		}
		// Keep reading a removed or renamed file for a while: its writer may
		// not have reopened yet.
		if n.Sub(f.goneSince) >= max(t.cfg.ScanInterval, 5*time.Second) {
			t.read(f, 1<<62)
			t.begin(f)
			if len(f.acc) > 0 {
				t.line(f, f.acc, f.accTrunc, f.lineStart, f.pos.Offset)
				f.acc = f.acc[:0]
				f.lineStart = f.pos.Offset
			}
			f.asm.flushAll(t.emitFor(f))
			t.end(f)
			t.forget(f)
			return true
		}
		return false
	}
	f.goneSince = time.Time{}
	dev, ino := statIDs(fi)
	if dev == f.pos.Dev && ino == f.pos.Inode {
		return false
	}
	// Renamed away and replaced: finish the old file, then follow the new.
	t.read(f, 1<<62)
	t.c.m.rotations.WithLabelValues("rename").Inc()
	t.restart(f, filePos{Dev: dev, Inode: ino})
	f.f.Close()
	f.f = nil
	t.open--
	t.openFile(f)
	return false
}

// read reads up to budget bytes of f and turns complete lines into
// records, which go to the buffer as one chunk.
func (t *tailer) read(f *tailFile, budget int) int {
	if f.f == nil {
		return 0
	}
	t.begin(f)
	total := 0
	for total < budget {
		n, err := f.f.Read(t.rbuf)
		if n > 0 {
			total += n
			t.consume(f, t.rbuf[:n])
		}
		if err != nil || n < len(t.rbuf) {
			if err != nil && err != io.EOF {
				t.c.m.readErrors.Inc()
				t.logger.Warn("cannot read log file", "file", f.path, "err", err)
			}
			break
		}
	}
	t.nBytes += total
	t.end(f)
	return total
}

// consume splits data into lines; a line without its newline yet waits in
// f.acc.
func (t *tailer) consume(f *tailFile, data []byte) {
	max := t.cfg.MaxLineBytes
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			f.accumulate(data, max)
			f.pos.Offset += int64(len(data))
			return
		}
		seg := data[:i]
		f.pos.Offset += int64(i + 1)
		var ln []byte
		trunc := false
		switch {
		case len(f.acc) > 0 || f.accTrunc:
			f.accumulate(seg, max)
			ln, trunc = f.acc, f.accTrunc
		case len(seg) > max:
			ln, trunc = seg[:max], true
		default:
			ln = seg
		}
		t.line(f, ln, trunc, f.lineStart, f.pos.Offset)
		if cap(f.acc) > 4<<20 {
			f.acc = nil
		} else {
			f.acc = f.acc[:0]
		}
		f.accTrunc = false
		f.lineStart = f.pos.Offset
		data = data[i+1:]
	}
}

func (f *tailFile) accumulate(b []byte, max int) {
	room := max - len(f.acc)
	if len(b) > room {
		if room > 0 {
			f.acc = append(f.acc, b[:room]...)
		}
		f.accTrunc = true
		return
	}
	f.acc = append(f.acc, b...)
}

// line decodes one physical line and hands it to the assembler.
func (t *tailer) line(f *tailFile, raw []byte, trunc bool, start, end int64) {
	t.nLines++
	if n := len(raw); n > 0 && raw[n-1] == '\r' {
		raw = raw[:n-1]
	}
	if f.format == FormatAuto {
		f.format = detectFormat(raw)
	}
	var l line
	ok := true
	switch f.format {
	case FormatCRI:
		l, ok = parseCRI(raw)
	case FormatDocker:
		l, ok = parseDocker(raw)
	default:
		l.content = raw
	}
	if !ok {
		t.c.m.parseErrors.WithLabelValues(f.format).Inc()
		l = line{content: raw}
	}
	f.asm.push(l, start, trunc, t.chunkNow, t.emitFor(f))
}

// begin starts a chunk of records of f.
func (t *tailer) begin(f *tailFile) {
	t.cur = f
	t.chunkNow = now()
	t.nextTs = max(t.nextTs, t.chunkNow.UnixNano())
	t.rec.reset()
	t.nLines, t.nBytes = 0, 0
}

// emitFor returns f's emit function (made once per file, not per line).
func (t *tailer) emitFor(f *tailFile) emitFunc {
	if f.emit == nil {
		f.emit = func(ts int64, stream uint8, content []byte, truncated bool) {
			t.emit(f, ts, stream, content, truncated)
		}
	}
	return f.emit
}

// emit handles one complete record.
func (t *tailer) emit(f *tailFile, ts int64, stream uint8, content []byte, truncated bool) {
	if ts == 0 {
		ts = t.nextTs
		t.nextTs++
	}
	if truncated {
		t.c.m.truncated.Inc()
	}
	if !utf8.Valid(content) {
		content = bytes.ToValidUTF8(content, []byte("\uFFFD"))
	}
	level := t.c.d.observe(f.wl, content)
	if t.buf != nil {
		t.rec.addEntry(ts, stream, content)
	} else {
		t.rec.n++
	}
	if t.fwd != nil {
		t.fwd.add(f, t.node, ts, stream, level, content)
	}
}

// end closes the chunk: its records go to the disk buffer together with
// the read position after them.
func (t *tailer) end(f *tailFile) {
	m := t.c.m
	if t.nLines > 0 {
		m.linesRead.Add(float64(t.nLines))
	}
	if t.nBytes > 0 {
		m.bytesRead.Add(float64(t.nBytes))
	}
	t.nLines, t.nBytes = 0, 0
	p := f.pos
	p.Offset = f.asm.safeOffset(f.lineStart)
	if t.rec.n > 0 {
		m.records.Add(float64(t.rec.n))
	}
	if t.fwd != nil {
		t.fwd.flush()
	}
	if t.rec.n == 0 && p == f.saved {
		return
	}
	if t.buf != nil {
		t.rec.path, t.rec.pos, t.rec.labels, t.rec.meta = f.path, p, f.labels, f.meta
		dropped, err := t.buf.append(&t.rec)
		switch {
		case err != nil:
			m.bufferErrors.Inc()
			m.dropped.WithLabelValues("buffer_error").Add(float64(t.rec.n))
			t.logger.Error("cannot write to the log buffer; lines are dropped", "err", err, "lines", t.rec.n)
		case dropped:
			m.dropped.WithLabelValues("buffer_full").Add(float64(t.rec.n))
		}
	}
	t.rec.reset()
	f.saved = p
	t.pos.Files[f.path] = p
	t.dirty = true
}

// commit saves the read positions (after the buffer is synced) and lets
// the shipper send what they cover.
func (t *tailer) commit() {
	t.lastSav = now()
	if !t.dirty {
		return
	}
	var seq uint64
	if t.buf != nil {
		if err := t.buf.sync(); err != nil {
			t.c.m.bufferErrors.Inc()
			t.logger.Warn("cannot fsync the log buffer", "err", err)
		}
		seq = t.buf.lastSeq()
		t.pos.Seq = seq
	}
	if err := t.pos.save(t.cfg.PositionsFile, t.cfg.Loki.Buffer.Fsync); err != nil {
		t.c.m.positionErrors.Inc()
		if !t.saveErr {
			t.logger.Error("cannot save read positions; a restart will read some lines again", "file", t.cfg.PositionsFile, "err", err)
		}
		t.saveErr = true
	} else {
		t.saveErr = false
	}
	// Ship even when positions could not be saved: a stalled shipper would
	// be worse than duplicates after a crash.
	if t.buf != nil {
		t.buf.commit(seq)
	}
	t.dirty = false
}

// close saves the positions and releases files and the buffer; called
// after run has returned.
func (t *tailer) close() error {
	var err error
	for _, f := range t.order {
		if f.f != nil {
			f.f.Close()
			f.f = nil
		}
	}
	t.open = 0
	if t.buf != nil {
		err = t.buf.close()
	}
	return err
}
