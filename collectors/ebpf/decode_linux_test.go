//go:build linux

package ebpf

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/collectors/ebpf/route"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

func encode(t testing.TB, v any) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newTestHandlers() *handlers {
	cfg := NewConfig()
	m := newMetrics(cfg)
	log := slog.New(slog.DiscardHandler)
	return newHandlers(cfg, m, nil, newClock(), event.NewBus(), newSpanQueue(nil, m.spansDropped, "", log), log)
}

func sampleTCP() tcpEvent {
	return tcpEvent{TsNs: 1, Kind: tcpConnect, Family: afInet, Saddr: [16]uint8{127, 0, 0, 1}, Daddr: [16]uint8{127, 0, 0, 1}, Sport: 40000, Dport: 80, DurationNs: 1000}
}

func sampleHTTP(dir uint8, payload string) httpEvent {
	e := httpEvent{TsNs: 1, Pid: 7, Fd: 3, Family: afInet, Dir: dir, Saddr: [16]uint8{127, 0, 0, 1}, Daddr: [16]uint8{127, 0, 0, 1}, Sport: 8080, Dport: 40000}
	e.Captured = uint16(copy(e.Data[:], payload))
	e.Size = uint32(e.Captured)
	return e
}

// Bad samples are dropped and counted, never half-used.
func TestDecodeErrorsAreCounted(t *testing.T) {
	h := newTestHandlers()
	good := encode(t, sampleTCP())
	bad := [][]byte{
		nil,
		[]byte("garbage"),
		good[:len(good)-1],                   // truncated
		append(append([]byte{}, good...), 0), // oversized
		encode(t, tcpEvent{Kind: 99, Family: afInet}),
		encode(t, procEvent{Kind: 0}),
	}
	for _, b := range bad {
		h.handleEvent(b)
	}
	h.handleEvent(good)
	if got := testutil.ToFloat64(h.m.decodeErrors.WithLabelValues("events")); got != float64(len(bad)) {
		t.Errorf("decode errors = %v, want %v", got, len(bad))
	}
	if got := testutil.CollectAndCount(h.m.tcpAttempts); got != 1 {
		t.Errorf("tcp attempt series = %d, want 1 (the good sample only)", got)
	}
	he := sampleHTTP(httpRead, "GET / HTTP/1.1\r\n\r\n")
	he.Captured = 9999
	short := encode(t, sampleHTTP(httpRead, "GET / HTTP/1.1\r\n\r\n"))[:httpHeaderSize+3] // fewer bytes than captured
	for _, b := range [][]byte{[]byte{1, 2, 3}, encode(t, he), short} {
		h.handleHTTP(b)
	}
	if got := testutil.ToFloat64(h.m.decodeErrors.WithLabelValues("http_events")); got != 3 {
		t.Errorf("http decode errors = %v, want 3", got)
	}
	// A record cut right after its captured bytes, as the kernel sends it,
	// is accepted.
	exact := encode(t, sampleHTTP(httpRead, "GET / HTTP/1.1\r\n\r\n"))
	var e httpEvent
	if err := decodeHTTPEvent(exact[:httpHeaderSize+len("GET / HTTP/1.1\r\n\r\n")], &e); err != nil {
		t.Errorf("exact-size record: %v", err)
	}
}

// A server request whose first byte came from a separate one-byte read
// (Go's keep-alive background read) is reassembled.
func TestHTTPPrefixByte(t *testing.T) {
	h := newTestHandlers()
	req := sampleHTTP(httpRead, "ET /a/1 HTTP/1.1\r\nHost: x\r\n\r\n")
	req.HasPrefix, req.Prefix = 1, 'G'
	h.handleHTTP(encode(t, req))
	resp := sampleHTTP(httpWrite, "HTTP/1.1 503 Service Unavailable\r\n")
	resp.TsNs = 2_000_001
	h.handleHTTP(encode(t, resp))
	want := `
# HELP vigil_http_requests_total HTTP/1.x and HTTP/2 (not gRPC) requests seen, by side (server or client), method, route and status class.
# TYPE vigil_http_requests_total counter
vigil_http_requests_total{container="",container_id="",kind="server",method="GET",namespace="",owner_kind="",owner_name="",pod="",pod_uid="",route="/a/{id}",status_class="5xx",unit=""} 1
`
	if err := testutil.CollectAndCompare(h.m.httpRequests, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// The label cap folds new series into one overflow series and counts it.
func TestSeriesCap(t *testing.T) {
	cfg := NewConfig()
	cfg.MaxSeries = 2
	m := newMetrics(cfg)
	log := slog.New(slog.DiscardHandler)
	h := newHandlers(cfg, m, nil, newClock(), nil, newSpanQueue(nil, m.spansDropped, "", log), log)
	for port := range uint16(5) {
		e := sampleTCP()
		e.Dport = 1000 + port
		h.handleEvent(encode(t, e))
	}
	if got := testutil.CollectAndCount(m.tcpAttempts); got != 3 {
		t.Errorf("series = %d, want 2 plus the overflow series", got)
	}
	if got := testutil.ToFloat64(m.tcpAttempts.WithLabelValues(append(make([]string, len(workload.LabelNames)), overflowValue)...)); got != 3 {
		t.Errorf("overflow series = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.seriesOverflow.WithLabelValues("tcp")); got < 3 {
		t.Errorf("vigil_ebpf_series_overflow_total{family=tcp} = %v", got)
	}
	var _ prometheus.Collector = m.tcpAttempts
}

// FuzzDecodeEvent feeds arbitrary samples (garbage, truncated, oversized)
// through the events ring's decoder and handler: no panic, and a sample is
// either decoded whole or rejected.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(encode(f, sampleTCP()))
	f.Add(encode(f, procEvent{Kind: procExit, ExitCode: 0x300, Pid: 1}))
	f.Add(encode(f, procEvent{Kind: procOOM, Value: 1 << 40}))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, tcpEventSize))
	h := newTestHandlers()
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(b)
		if (ev == nil) == (err == nil) {
			t.Fatalf("decodeEvent(%x) = %v, %v", b, ev, err)
		}
		h.handleEvent(b)
	})
}

// FuzzDecodeHTTPEvent does the same for the HTTP ring, with the payload
// parsed as HTTP; it also checks the parser on cut messages.
func FuzzDecodeHTTPEvent(f *testing.F) {
	f.Add(encode(f, sampleHTTP(httpRead, "GET /x?y HTTP/1.1\r\nHost: a\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")))
	f.Add(encode(f, sampleHTTP(httpWrite, "HTTP/1.1 200 OK\r\n")))
	f.Add(encode(f, sampleHTTP(httpWrite, "HTTP/1.0 9")))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	h := newTestHandlers()
	f.Fuzz(func(t *testing.T, b []byte) {
		var e httpEvent
		if err := decodeHTTPEvent(b, &e); err == nil {
			if int(e.Captured) > len(e.Data) {
				t.Fatalf("accepted captured=%d", e.Captured)
			}
		}
		h.handleHTTP(b)
		m, err := parseHTTP(b)
		if err == nil && !m.Request && (m.Status < 100 || m.Status > 999) {
			t.Fatalf("parseHTTP(%q) status %d", b, m.Status)
		}
		if err == nil && m.Request {
			_, r := route.Of(m.Target)
			if !strings.HasPrefix(r, "/") {
				t.Fatalf("route %q of %q", r, m.Target)
			}
		}
		_, _ = parseTraceParent(string(b))
	})
}

// BenchmarkHandleTCPEvent is the user-space cost of one TCP event: decode,
// workload lookup and metric updates.
func BenchmarkHandleTCPEvent(b *testing.B) {
	h := newTestHandlers()
	e := sampleTCP()
	e.Kind = tcpClose
	raw := encode(b, e)
	b.ReportAllocs()
	for b.Loop() {
		h.handleEvent(raw)
	}
}

// BenchmarkHandleHTTPRequest is the user-space cost of one request seen on
// the server side: the request read and the response write, parsed,
// matched, counted and turned into a span.
func BenchmarkHandleHTTPRequest(b *testing.B) {
	h := newTestHandlers()
	req := encode(b, sampleHTTP(httpRead, "GET /api/items/42 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"))
	resp := encode(b, sampleHTTP(httpWrite, "HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 21:00:00 GMT\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nok"))
	b.ReportAllocs()
	for b.Loop() {
		h.handleHTTP(req)
		h.handleHTTP(resp)
	}
}

// BenchmarkSpans is the cost of turning one finished request into a span
// in a batch of 512.
func BenchmarkSpans(b *testing.B) {
	q := newSpanQueue(nil, prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}), "node", slog.New(slog.DiscardHandler))
	p := pendingRequest{server: true, method: 0, version: "1.1", route: &routeInfo{target: "/a/1", path: "/a/1", route: "/a/{id}"},
		pid: 1, traceID: [16]byte{1}, spanID: [8]byte{2}, parentID: [8]byte{3}}
	batch := make([]*httpSpan, 512)
	for i := range batch {
		batch[i] = &httpSpan{req: p, status: 200}
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = q.traces(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/span")
}
