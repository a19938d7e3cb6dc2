package logs

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// BenchmarkFileToLoki measures the whole path: b.N lines written to a file,
// tailed, buffered on disk, batched and pushed to an in-process fake Loki
// that decodes every request. hack/bench/logs.sh compares the same path
// against the OpenTelemetry Collector.
func BenchmarkFileToLoki(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "app.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range b.N {
		fmt.Fprintf(w, "2024-01-02T03:04:05Z level=info msg=\"request served\" id=%09d path=/api/v1/items xxxxxxxxxxxxxxxxxxxxxx\n", i)
	}
	w.Flush()
	f.Close()
	loki := newFakeLoki(b)
	cfg := testConfig(b, dir, loki.srv.URL)
	cfg.Loki.Buffer.SegmentBytes = 8 << 20
	cfg.Loki.Buffer.MaxBytes = 1 << 30
	cfg.Loki.BatchSize = 1 << 20
	b.ResetTimer()
	c, err := New(cfg, settings())
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	for {
		loki.mu.Lock()
		n := len(loki.got)
		loki.mu.Unlock()
		if n >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	_ = c.Shutdown(b.Context())
}

// BenchmarkLineHandling measures the tailer's per-line work alone (split,
// level detection, one literal pattern, record encoding).
func BenchmarkLineHandling(b *testing.B) {
	cfg := NewConfig()
	cfg.Patterns = []PatternConfig{{Name: "boom", Literal: "boom"}}
	c, _ := New(cfg, settings())
	tl := newTailer(c, &positions{Files: map[string]filePos{}})
	f := &tailFile{path: "/x", src: &source{}, format: FormatPlain, asm: newAssembler(cfg.MaxLineBytes, MultilineConfig{})}
	f.wl = c.d.attach(f.id)
	tl.buf = nil
	chunk := []byte{}
	for i := range 1000 {
		chunk = fmt.Appendf(chunk, "2024-01-02T03:04:05Z level=info msg=\"request served\" id=%09d path=/api/v1/items\n", i)
	}
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		tl.begin(f)
		tl.consume(f, chunk)
		tl.rec.reset()
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkFileToDiscardingStore is BenchmarkFileToLoki with a store that
// reads each request body and answers 204 without decoding it, so that a
// CPU profile shows the agent's own work: the benchmark ends when the
// shipper has counted every line as sent.
func BenchmarkFileToDiscardingStore(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "app.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range b.N {
		fmt.Fprintf(w, "2024-01-02T03:04:05Z level=info msg=\"request served\" id=%09d path=/api/v1/items xxxxxxxxxxxxxxxxxxxxxx\n", i)
	}
	w.Flush()
	f.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testConfig(b, dir, srv.URL)
	cfg.Loki.Buffer.SegmentBytes = 8 << 20
	cfg.Loki.Buffer.MaxBytes = 1 << 30
	cfg.Loki.BatchSize = 1 << 20
	b.ResetTimer()
	c, err := New(cfg, settings())
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	for testutil.ToFloat64(c.m.sentLines) < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	_ = c.Shutdown(b.Context())
}
