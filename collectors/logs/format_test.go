package logs

import (
	"strings"
	"testing"
	"time"
)

func TestParseCRI(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		stream  uint8
		partial bool
		content string
	}{
		{"2024-01-02T03:04:05.123456789Z stdout F hello world", true, streamStdout, false, "hello world"},
		{"2024-01-02T03:04:05.123456789+01:00 stderr P part", true, streamStderr, true, "part"},
		{"2024-01-02T03:04:05Z stdout F", true, streamStdout, false, ""},
		{"2024-01-02T03:04:05Z stdout F ", true, streamStdout, false, ""},
		{"2024-01-02T03:04:05Z stdout F:x keep  spaces ", true, streamStdout, false, "keep  spaces "},
		{"2024-01-02T03:04:05Z stdin F nope", false, 0, false, ""},
		{"2024-01-02T03:04:05Z stdout X nope", false, 0, false, ""},
		{"not a timestamp stdout F x", false, 0, false, ""},
		{"plain text line", false, 0, false, ""},
	} {
		l, ok := parseCRI([]byte(tc.in))
		if ok != tc.ok {
			t.Errorf("parseCRI(%q) ok = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if l.stream != tc.stream || l.partial != tc.partial || string(l.content) != tc.content {
			t.Errorf("parseCRI(%q) = stream %d partial %v content %q", tc.in, l.stream, l.partial, l.content)
		}
		if l.ts == 0 {
			t.Errorf("parseCRI(%q): no timestamp", tc.in)
		}
	}
}

func TestParseDocker(t *testing.T) {
	l, ok := parseDocker([]byte(`{"log":"hello \"x\"\n","stream":"stderr","time":"2024-01-02T03:04:05.5Z"}`))
	if !ok || string(l.content) != `hello "x"` || l.stream != streamStderr || l.partial {
		t.Fatalf("got %+v ok=%v", l, ok)
	}
	if want := time.Date(2024, 1, 2, 3, 4, 5, 5e8, time.UTC).UnixNano(); l.ts != want {
		t.Errorf("ts = %d, want %d", l.ts, want)
	}
	l, ok = parseDocker([]byte(`{"log":"first half","stream":"stdout","time":"2024-01-02T03:04:05Z"}`))
	if !ok || !l.partial || string(l.content) != "first half" {
		t.Fatalf("partial docker line: %+v ok=%v", l, ok)
	}
	if _, ok := parseDocker([]byte(`{"log":`)); ok {
		t.Error("broken JSON parsed")
	}
}

func TestDetectFormat(t *testing.T) {
	for in, want := range map[string]string{
		`{"log":"x\n","stream":"stdout","time":"2024-01-02T03:04:05Z"}`: FormatDocker,
		"2024-01-02T03:04:05.1Z stdout F x":                             FormatCRI,
		"Nov 25 10:00:00 host sshd[1]: hello":                           FormatPlain,
		`{"level":"info","msg":"json app log"}`:                         FormatPlain,
	} {
		if got := detectFormat([]byte(in)); got != want {
			t.Errorf("detectFormat(%q) = %s, want %s", in, got, want)
		}
	}
}

type emitted struct {
	stream    uint8
	content   string
	truncated bool
}

func collect(out *[]emitted) emitFunc {
	return func(ts int64, stream uint8, content []byte, truncated bool) {
		*out = append(*out, emitted{stream, string(content), truncated})
	}
}

func TestAssemblerCRIPartials(t *testing.T) {
	a := newAssembler(1024, MultilineConfig{})
	var out []emitted
	emit := collect(&out)
	n := time.Now()
	// Partials of stdout and stderr interleave; each stream is reassembled
	// on its own.
	a.push(line{ts: 1, stream: streamStdout, partial: true, content: []byte("hel")}, 0, false, n, emit)
	a.push(line{ts: 2, stream: streamStderr, partial: true, content: []byte("err-")}, 10, false, n, emit)
	if got := a.safeOffset(30); got != 0 {
		t.Errorf("safeOffset with a pending partial = %d, want 0 (its start)", got)
	}
	a.push(line{ts: 3, stream: streamStdout, content: []byte("lo")}, 20, false, n, emit)
	if got := a.safeOffset(40); got != 10 {
		t.Errorf("safeOffset with the stderr partial pending = %d, want 10", got)
	}
	a.push(line{ts: 4, stream: streamStderr, content: []byte("done")}, 30, false, n, emit)
	want := []emitted{{streamStdout, "hello", false}, {streamStderr, "err-done", false}}
	if len(out) != 2 || out[0] != want[0] || out[1] != want[1] {
		t.Fatalf("got %+v, want %+v", out, want)
	}
	if got := a.safeOffset(50); got != 50 {
		t.Errorf("safeOffset with nothing pending = %d, want 50", got)
	}
}

func TestAssemblerPartialTruncation(t *testing.T) {
	a := newAssembler(1024, MultilineConfig{})
	var out []emitted
	emit := collect(&out)
	chunk := strings.Repeat("x", 600)
	a.push(line{stream: streamStdout, partial: true, content: []byte(chunk)}, 0, false, time.Now(), emit)
	a.push(line{stream: streamStdout, partial: true, content: []byte(chunk)}, 700, false, time.Now(), emit)
	a.push(line{stream: streamStdout, content: []byte(chunk)}, 1400, false, time.Now(), emit)
	if len(out) != 1 || len(out[0].content) != 1024 || !out[0].truncated {
		t.Fatalf("got %d records, first len %d truncated %v", len(out), len(out[0].content), out[0].truncated)
	}
}

func TestAssemblerMultiline(t *testing.T) {
	a := newAssembler(1<<20, MultilineConfig{Start: `^\d{4}-`, MaxLines: 3, Timeout: time.Second})
	var out []emitted
	emit := collect(&out)
	n := time.Now()
	in := []string{
		"2024-01-01 first",
		"java.lang.Exception: boom",
		"\tat a.b(C.java:1)",
		"2024-01-01 second",
		"2024-01-01 third",
		"  cont 1", "  cont 2", "  cont 3", // max_lines 3 splits the group
	}
	for i, s := range in {
		a.push(line{content: []byte(s)}, int64(i*100), false, n, emit)
	}
	if got := a.safeOffset(800); got != 700 {
		t.Errorf("safeOffset = %d, want 700 (start of the open group)", got)
	}
	if a.flushIdle(n.Add(500*time.Millisecond), emit) {
		t.Error("group flushed before its timeout")
	}
	if !a.flushIdle(n.Add(time.Second), emit) {
		t.Error("group not flushed after its timeout")
	}
	want := []string{
		"2024-01-01 first\njava.lang.Exception: boom\n\tat a.b(C.java:1)",
		"2024-01-01 second",
		"2024-01-01 third\n  cont 1\n  cont 2",
		"  cont 3",
	}
	if len(out) != len(want) {
		t.Fatalf("got %d records %+v, want %d", len(out), out, len(want))
	}
	for i := range want {
		if out[i].content != want[i] {
			t.Errorf("record %d = %q, want %q", i, out[i].content, want[i])
		}
	}
}

func TestDetectLevel(t *testing.T) {
	for in, want := range map[string]string{
		`level=error msg="db down"`:                      "error",
		`{"level":"WARN","msg":"slow"}`:                  "warn",
		`2024-01-01 10:00:00 [INFO] started`:             "info",
		`E1125 10:00:00.000000    1 reflector.go:1] x`:   "error",
		`W1125 10:00:00.000000    1 main.go:1] x`:        "warn",
		`panic: runtime error: index out of range`:       "fatal",
		`GET /index.html 200 12ms`:                       "unknown",
		`DEBUG cache hit`:                                "debug",
		`informational message about errors`:             "unknown",
		`2024-01-01T00:00:00Z CRITICAL disk almost full`: "fatal",
	} {
		if got := levelNames[detectLevel([]byte(in), 200)]; got != want {
			t.Errorf("detectLevel(%q) = %s, want %s", in, got, want)
		}
	}
}

func FuzzParsers(f *testing.F) {
	f.Add([]byte("2024-01-02T03:04:05Z stdout F x"))
	f.Add([]byte(`{"log":"x\n","stream":"stdout","time":"2024-01-02T03:04:05Z"}`))
	f.Add([]byte{0xff, 0xfe, 0, '\n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseCRI(b)
		parseDocker(b)
		detectFormat(b)
		detectLevel(b, 200)
	})
}
