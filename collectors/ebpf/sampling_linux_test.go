//go:build linux

package ebpf

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/component"
)

// samplingHandlers are handlers whose span queue is read by the test.
func samplingHandlers(cfg *Config) *handlers {
	m := newMetrics(cfg)
	log := slog.New(slog.DiscardHandler)
	q := newSpanQueue(consumertest.NewNop(), m.spansDropped, "", log)
	return newHandlers(cfg, m, nil, newClock(), nil, q, log)
}

// exchange feeds one server request on connection fd, with the given extra
// header, answered with status at tsNS.
func exchange(t *testing.T, h *handlers, fd uint32, header string, status int, tsNS uint64) {
	req := sampleHTTP(httpRead, "GET /x HTTP/1.1\r\nHost: a\r\n"+header+"\r\n")
	req.Fd, req.TsNs = fd, tsNS
	resp := sampleHTTP(httpWrite, fmt.Sprintf("HTTP/1.1 %d X\r\n", status))
	resp.Fd, resp.TsNs = fd, tsNS+1000
	h.handleHTTP(encode(t, req))
	h.handleHTTP(encode(t, resp))
}

// queued takes the spans queued so far.
func queued(h *handlers) []*httpSpan {
	var out []*httpSpan
	for len(h.spans.c) > 0 {
		out = append(out, <-h.spans.c)
	}
	return out
}

func TestSpanSampling(t *testing.T) {
	cfg := NewConfig()
	cfg.Spans.SampleRatio = 0
	h := samplingHandlers(cfg)
	exchange(t, h, 1, "", 200, 1e9)                                                                         // root, ratio 0: dropped
	exchange(t, h, 2, "", 503, 1e9)                                                                         // error: kept
	exchange(t, h, 3, "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n", 200, 1e9) // caller sampled: kept
	exchange(t, h, 4, "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n", 200, 1e9) // caller did not sample: dropped
	got := queued(h)
	if len(got) != 2 || got[0].status != 503 || got[1].req.parentID != [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7} {
		t.Fatalf("exported %d spans, want the 503 and the sampled traceparent one", len(got))
	}
	if v := testutil.ToFloat64(h.m.spansSampledOut); v != 2 {
		t.Errorf("vigil_ebpf_spans_sampled_out_total = %v, want 2", v)
	}
	lv := func(class string) []string { return append(workload.Identity{}.Labels(), "/x", "server", "GET", class) }
	ok := testutil.ToFloat64(h.m.httpRequests.WithLabelValues(lv("2xx")...))
	failed := testutil.ToFloat64(h.m.httpRequests.WithLabelValues(lv("5xx")...))
	if ok != 3 || failed != 1 {
		t.Errorf("vigil_http_requests_total 2xx %v, 5xx %v; want every request counted (3 and 1)", ok, failed)
	}

	// Ratio 1 with a cap of 3 a second: three root spans in the first
	// second, then one more a third of a second later.
	cfg = NewConfig()
	cfg.Spans.MaxPerSecond = 3
	h = samplingHandlers(cfg)
	for i := range uint32(10) {
		exchange(t, h, 10+i, "", 200, 5e9)
	}
	exchange(t, h, 30, "", 200, 5e9+4e8)
	if n := len(queued(h)); n != 4 {
		t.Errorf("with max_per_second 3, exported %d spans, want 4", n)
	}
}

// Every loss counter the kernel keeps is named after a program.
func TestLossCountersArePerProgram(t *testing.T) {
	spec, err := loadVigil()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps["lost"].MaxEntries; int(n) != len(lossNames) {
		t.Fatalf("lost map has %d entries, lossNames %d", n, len(lossNames))
	}
	known := map[string]bool{}
	for _, p := range programs {
		known[p.name] = true
	}
	for _, n := range lossNames {
		if !known[n] {
			t.Errorf("loss counter %q names no program", n)
		}
	}
}

// TestNoSpansWithoutATraceExporter: with the agent's pipeline as the traces
// consumer and no exporter taking traces (the default configuration), no
// span is queued, every finished request is still in the metrics and is
// counted as unexported; once a consumer that wants spans is added, spans
// are made again; a consumer that says it wants none (an exporter without
// the traces signal) does not count.
func TestNoSpansWithoutATraceExporter(t *testing.T) {
	cfg := NewConfig()
	m := newMetrics(cfg)
	log := slog.New(slog.DiscardHandler)
	p := component.NewPipeline()
	h := newHandlers(cfg, m, nil, newClock(), nil, newSpanQueue(p.Traces(), m.spansDropped, "", log), log)

	exchange(t, h, 1, "", 200, 1e9)
	exchange(t, h, 2, "", 503, 1e9) // an error: exported whenever spans are made
	if got := queued(h); len(got) != 0 {
		t.Fatalf("%d spans queued with no trace exporter", len(got))
	}
	if v := testutil.ToFloat64(m.spansUnexported); v != 2 {
		t.Errorf("vigil_ebpf_spans_unexported_total = %v, want 2", v)
	}
	lv := func(class string) []string { return append(workload.Identity{}.Labels(), "/x", "server", "GET", class) }
	if ok, bad := testutil.ToFloat64(m.httpRequests.WithLabelValues(lv("2xx")...)), testutil.ToFloat64(m.httpRequests.WithLabelValues(lv("5xx")...)); ok != 1 || bad != 1 {
		t.Errorf("requests counted 2xx %v, 5xx %v; want 1 each", ok, bad)
	}

	removeUnwanting := p.AddTraces(unwanting{consumertest.NewNop()})
	exchange(t, h, 3, "", 503, 2e9)
	if got := queued(h); len(got) != 0 {
		t.Fatalf("%d spans queued for a consumer that wants none", len(got))
	}
	removeUnwanting()

	sink := new(consumertest.TracesSink)
	p.AddTraces(sink)
	exchange(t, h, 4, "", 503, 3e9)
	if got := queued(h); len(got) != 1 || got[0].status != 503 {
		t.Fatalf("%d spans queued with a trace consumer, want the 503", len(got))
	}
	if v := testutil.ToFloat64(m.spansUnexported); v != 3 {
		t.Errorf("vigil_ebpf_spans_unexported_total = %v, want 3", v)
	}
}

// unwanting is a traces consumer that says it wants no spans.
type unwanting struct{ consumer.Traces }

func (unwanting) Wanted() bool { return false }
