package agent

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// otlpHTTPSink records the metric names and log bodies posted to it.
type otlpHTTPSink struct {
	mu      sync.Mutex
	metrics map[string]map[string]any // metric name → resource attributes
	logs    []string
}

func (s *otlpHTTPSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, _ := io.ReadAll(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case "/v1/metrics":
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rms := req.Metrics().ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			ms := rms.At(i).ScopeMetrics().At(0).Metrics()
			for j := 0; j < ms.Len(); j++ {
				s.metrics[ms.At(j).Name()] = rms.At(i).Resource().Attributes().AsRaw()
			}
		}
	case "/v1/logs":
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		lrs := req.Logs().ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
		for i := 0; i < lrs.Len(); i++ {
			s.logs = append(s.logs, lrs.At(i).Body().AsString())
		}
	}
	w.WriteHeader(http.StatusOK)
}

// TestExportersSection runs an agent whose exporters section sends to an
// OTLP/HTTP server: the gathered metrics (a collector's and the agent's
// own) and the log records on the pipeline arrive, with the node's
// resource attributes, and a reload moves the target.
func TestExportersSection(t *testing.T) {
	newSink := func() (*otlpHTTPSink, *httptest.Server) {
		s := &otlpHTTPSink{metrics: map[string]map[string]any{}}
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		return s, srv
	}
	sink1, srv1 := newSink()
	sink2, srv2 := newSink()
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	conf := func(url string) string {
		return `
global: {node_name: node-under-test}
collectors:
  test_ok: {value: 42}
exporters:
  interval: 100ms
  targets:
    otlphttp/central:
      endpoint: ` + url + `
      retry: {initial_interval: 50ms, max_interval: 100ms}
`
	}
	writeFile(t, path, conf(srv1.URL))
	a, url := startAgent(t, path)

	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("hello from a collector")
	if err := a.Pipeline().Logs().ConsumeLogs(context.Background(), ld); err != nil {
		t.Fatal(err)
	}
	waitUntil("metrics and the log record at the first target", func() bool {
		sink1.mu.Lock()
		defer sink1.mu.Unlock()
		return sink1.metrics["vigil_test_value"] != nil && sink1.metrics["vigil_exporter_sent_total"] != nil && len(sink1.logs) == 1
	})
	sink1.mu.Lock()
	res := sink1.metrics["vigil_test_value"]
	logBody := sink1.logs[0]
	sink1.mu.Unlock()
	if res["service.name"] != "vigil" || res["os.type"] != "linux" || res["k8s.node.name"] != "node-under-test" || res["host.name"] == nil {
		t.Errorf("resource = %v", res)
	}
	if logBody != "hello from a collector" {
		t.Errorf("log body = %q", logBody)
	}
	_, _, metrics := get(t, url+"/metrics")
	wantLine(t, metrics, `vigil_exporter_queue_capacity{exporter="otlphttp/central",signal="logs"} 1e+06`)
	if !strings.Contains(metrics, `vigil_node_info{host_id=`) || !strings.Contains(metrics, `k8s_node_name="node-under-test"`) {
		t.Errorf("vigil_node_info missing from /metrics")
	}

	writeFile(t, path, conf(srv2.URL))
	if code, body := reload(t, a); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	waitUntil("metrics at the second target after the reload", func() bool {
		sink2.mu.Lock()
		defer sink2.mu.Unlock()
		return sink2.metrics["vigil_test_value"] != nil
	})
}

func TestExportersSectionErrorsNameTheField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, `
exporters:
  targets:
    otlp/central:
      endpiont: collector:4317
`)
	_, err := LoadFile(path)
	if err == nil {
		t.Fatal("a typo in the exporters section was accepted")
	}
	for _, want := range []string{"vigil.yaml:5:", "exporters.targets.otlp/central.endpiont", `did you mean "endpoint"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
