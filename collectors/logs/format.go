package logs

import (
	"bytes"
	"encoding/json"
	"regexp"
	"time"
)

// Output streams of a container, as CRI and Docker record them.
const (
	streamNone   uint8 = 0
	streamStdout uint8 = 1
	streamStderr uint8 = 2
)

var streamNames = [...]string{"", "stdout", "stderr"}

// line is one physical line decoded from its file format.
type line struct {
	ts      int64 // Unix nanoseconds; 0 when the format carries none
	stream  uint8
	partial bool // CRI "P" or a Docker log without its newline: more follows
	content []byte
}

// detectFormat guesses a file's format from its first complete line.
func detectFormat(b []byte) string {
	if bytes.HasPrefix(b, []byte(`{"log":`)) || (len(b) > 0 && b[0] == '{' && bytes.Contains(b, []byte(`"log":`)) && bytes.Contains(b, []byte(`"stream":`))) {
		return FormatDocker
	}
	if _, ok := parseCRI(b); ok {
		return FormatCRI
	}
	return FormatPlain
}

// parseCRI decodes "<RFC3339Nano> <stdout|stderr> <P|F> <content>"; the
// content may be empty ("… stdout F" with or without the final space).
func parseCRI(b []byte) (line, bool) {
	var l line
	sp := bytes.IndexByte(b, ' ')
	if sp < 20 || sp > 40 {
		return l, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(b[:sp]))
	if err != nil {
		return l, false
	}
	rest := b[sp+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		l.stream = streamStdout
	case bytes.HasPrefix(rest, []byte("stderr ")):
		l.stream = streamStderr
	default:
		return l, false
	}
	rest = rest[7:]
	if len(rest) == 0 {
		return l, false
	}
	// The tag field is a colon-separated list whose first element is P or F.
	tagEnd := bytes.IndexByte(rest, ' ')
	tag := rest
	if tagEnd >= 0 {
		tag = rest[:tagEnd]
		rest = rest[tagEnd+1:]
	} else {
		rest = nil
	}
	if i := bytes.IndexByte(tag, ':'); i >= 0 {
		tag = tag[:i]
	}
	switch string(tag) {
	case "P":
		l.partial = true
	case "F":
	default:
		return l, false
	}
	l.ts = ts.UnixNano()
	l.content = rest
	return l, true
}

type dockerLine struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// parseDocker decodes one json-file line. Docker splits long lines at 16
// KiB; a piece without the trailing newline is partial.
func parseDocker(b []byte) (line, bool) {
	var d dockerLine
	var l line
	if err := json.Unmarshal(b, &d); err != nil {
		return l, false
	}
	switch d.Stream {
	case "stdout":
		l.stream = streamStdout
	case "stderr":
		l.stream = streamStderr
	}
	if !d.Time.IsZero() {
		l.ts = d.Time.UnixNano()
	}
	c := []byte(d.Log)
	if n := len(c); n > 0 && c[n-1] == '\n' {
		c = c[:n-1]
	} else {
		l.partial = true
	}
	l.content = c
	return l, true
}

// pending is content held back until it is complete: a CRI/Docker record
// split over partial lines, or a multiline group.
type pending struct {
	active    bool
	buf       []byte
	ts        int64
	stream    uint8
	start     int64 // file offset of its first line: where a restart re-reads
	lines     int
	truncated bool
	last      time.Time
}

func (p *pending) begin(ts int64, stream uint8, start int64, now time.Time) {
	p.active, p.ts, p.stream, p.start, p.lines, p.truncated, p.last = true, ts, stream, start, 0, false, now
	p.buf = p.buf[:0]
}

// add appends b, keeping at most max bytes.
func (p *pending) add(b []byte, max int) {
	if room := max - len(p.buf); room < len(b) {
		if room > 0 {
			p.buf = append(p.buf, b[:room]...)
		}
		p.truncated = true
		return
	}
	p.buf = append(p.buf, b...)
}

func (p *pending) reset() {
	p.active = false
	if cap(p.buf) > 1<<20 {
		p.buf = nil // do not keep a huge buffer per file
	} else {
		p.buf = p.buf[:0]
	}
}

// emitFunc receives one complete record.
type emitFunc func(ts int64, stream uint8, content []byte, truncated bool)

// assembler turns decoded physical lines into records: it reassembles
// partial lines per stream and groups multiline records.
type assembler struct {
	max       int
	partial   [3]pending
	ml        *regexp.Regexp
	mlMax     int
	mlTimeout time.Duration
	group     pending
}

func newAssembler(max int, m MultilineConfig) *assembler {
	a := &assembler{max: max}
	if m.Start != "" {
		a.ml = regexp.MustCompile(m.Start) // validated by Config.Validate
		a.mlMax = m.MaxLines
		if a.mlMax == 0 {
			a.mlMax = 1000
		}
		a.mlTimeout = m.Timeout
		if a.mlTimeout == 0 {
			a.mlTimeout = time.Second
		}
	}
	return a
}

// push handles one physical line that spans file offsets [start, end).
func (a *assembler) push(l line, start int64, truncated bool, now time.Time, emit emitFunc) {
	content := l.content
	ts := l.ts
	if p := &a.partial[l.stream]; l.partial || p.active {
		if !p.active {
			p.begin(ts, l.stream, start, now)
		}
		p.add(content, a.max)
		p.truncated = p.truncated || truncated
		if l.partial {
			return
		}
		content, ts, start, truncated = p.buf, p.ts, p.start, p.truncated
		defer p.reset()
	}
	if a.ml == nil {
		emit(ts, l.stream, content, truncated)
		return
	}
	g := &a.group
	if g.active && (g.stream != l.stream || g.lines >= a.mlMax || a.ml.Match(content)) {
		a.flushGroup(emit)
	}
	if !g.active {
		g.begin(ts, l.stream, start, now)
	} else {
		g.add([]byte{'\n'}, a.max)
	}
	g.add(content, a.max)
	g.truncated = g.truncated || truncated
	g.lines++
	g.last = now
}

func (a *assembler) flushGroup(emit emitFunc) {
	g := &a.group
	if !g.active {
		return
	}
	emit(g.ts, g.stream, g.buf, g.truncated)
	g.reset()
}

// flushIdle emits a multiline group that has waited longer than the
// timeout.
func (a *assembler) flushIdle(now time.Time, emit emitFunc) bool {
	if a.group.active && now.Sub(a.group.last) >= a.mlTimeout {
		a.flushGroup(emit)
		return true
	}
	return false
}

// flushAll emits everything held back (the file is going away).
func (a *assembler) flushAll(emit emitFunc) {
	for i := range a.partial {
		p := &a.partial[i]
		if p.active {
			a.push(line{ts: p.ts, stream: p.stream}, p.start, false, p.last, emit)
		}
	}
	a.flushGroup(emit)
}

// safeOffset is the offset a restart must resume from: the start of the
// oldest record still held back, or end when nothing is.
func (a *assembler) safeOffset(end int64) int64 {
	off := end
	for i := range a.partial {
		if a.partial[i].active && a.partial[i].start < off {
			off = a.partial[i].start
		}
	}
	if a.group.active && a.group.start < off {
		off = a.group.start
	}
	return off
}
