package exporters

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// These tests export to the real backends from internal/testenv:
// Prometheus (remote-write receiver), an OpenTelemetry Collector (OTLP in,
// files out) and VictoriaLogs (OTLP logs). Each backend is stopped and
// restarted on the same port to check that an outage within the queue's
// bound loses nothing.

// TestRemoteWriteToPrometheus exports to Prometheus, reads the series back
// with PromQL, then counts samples across an outage.
func TestRemoteWriteToPrometheus(t *testing.T) {
	p := testenv.StartPrometheus(t, testenv.PrometheusOptions{RemoteWriteReceiver: true})
	cfg := NewConfig()
	cfg.Interval = time.Hour // gathers are made by the test
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"prometheusremotewrite/prom": {Endpoint: p.URL + "/api/v1/write", ExternalLabels: map[string]string{"cluster": "test"}, Retry: fastRetry()},
	}
	x, reg := startExporters(t, cfg)
	ctx := context.Background()
	gather := func(n int) {
		for range n {
			x.mu.RLock()
			run := x.run
			x.mu.RUnlock()
			x.exportMetrics(ctx, run, time.Now())
			time.Sleep(5 * time.Millisecond) // distinct millisecond timestamps
		}
	}
	gather(3)
	got := p.WaitForQuery(t, 60*time.Second, `test_requests_total{pod="cart-1"}`, func(s []testenv.Sample) bool { return len(s) == 1 })
	want := map[string]string{"__name__": "test_requests_total", "code": "200", "namespace": "shop", "pod": "cart-1", "container": "cart",
		"container_id": "abc", "pod_uid": "uid-1", "owner_kind": "Deployment", "owner_name": "cart", "job": "vigil", "instance": "node-a", "cluster": "test"}
	for k, v := range want {
		if got[0].Metric[k] != v {
			t.Errorf("label %s = %q, want %q (series %v)", k, got[0].Metric[k], v, got[0].Metric)
		}
	}
	if got[0].Value != 7 {
		t.Errorf("value = %v, want 7", got[0].Value)
	}
	p.WaitForQuery(t, 60*time.Second, `target_info{job="vigil",instance="node-a",os_type="linux"}`, func(s []testenv.Sample) bool { return len(s) == 1 })

	// Outage: 10 gathers while Prometheus is down, then it comes back.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	gather(10)
	testenv.EventuallyTrue(t, time.Minute, "failed sends during the outage", func() bool {
		return counter(reg, "vigil_exporter_send_failed_total", "prometheusremotewrite/prom", SignalMetrics) > 0
	})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	p.WaitForQuery(t, 120*time.Second, `count_over_time(test_node_load[1h])`, func(s []testenv.Sample) bool {
		return len(s) == 1 && s[0].Value == 13
	})
	if d := counter(reg, "vigil_exporter_dropped_total", "prometheusremotewrite/prom", SignalMetrics); d != 0 {
		t.Errorf("dropped = %v, want 0", d)
	}
}

// TestOTLPToCollector sends metrics, logs and spans over gRPC and HTTP to
// an OpenTelemetry Collector and reads what it wrote.
func TestOTLPToCollector(t *testing.T) {
	c := testenv.StartOTelCollector(t)
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlp/grpc":     {Endpoint: c.GRPCEndpoint, TLS: TLSConfig{Insecure: true}, Retry: fastRetry()},
		"otlphttp/http": {Endpoint: c.HTTPURL, Retry: fastRetry()},
	}
	x, _ := startExporters(t, cfg)
	ctx := context.Background()
	_ = x.Logs().ConsumeLogs(ctx, makeLogs(0, 5))
	_ = x.Traces().ConsumeTraces(ctx, makeTraces(3))
	x.GatherNow()

	testenv.EventuallyTrue(t, time.Minute, "the collector to write metrics, logs and spans from both targets", func() bool {
		ms, _ := c.Metrics()
		ls, _ := c.LogRecords()
		ss, _ := c.Spans()
		n := 0
		for _, m := range ms {
			if m.Name == "test_requests_total" {
				n++
			}
		}
		return n >= 2 && len(ls) >= 10 && len(ss) >= 6
	})
	ms, _ := c.Metrics()
	for _, m := range ms {
		if m.Name != "test_requests_total" {
			continue
		}
		for k, v := range map[string]any{AttrK8sPodName: "cart-1", AttrK8sNamespaceName: "shop", AttrK8sContainerName: "cart",
			AttrK8sPodUID: "uid-1", AttrContainerID: "abc", "k8s.deployment.name": "cart", AttrServiceName: "cart", AttrOSType: "linux", AttrK8sNodeName: "node-a"} {
			if m.Resource[k] != v {
				t.Errorf("metric resource %s = %v, want %v", k, m.Resource[k], v)
			}
		}
		if m.Resource[AttrHostName] == nil {
			t.Error("host.name missing")
		}
	}
	ls, _ := c.LogRecords()
	if ls[0].Resource[AttrK8sPodName] != "cart-1" || ls[0].Resource[AttrHostName] == nil {
		t.Errorf("log resource = %v", ls[0].Resource)
	}
	ss, _ := c.Spans()
	if ss[0].Resource[AttrOSType] != "linux" {
		t.Errorf("span resource = %v", ss[0].Resource)
	}
}

// TestOTLPCollectorOutage stops the collector, keeps producing logs and
// spans, restarts it and counts that every one arrived.
func TestOTLPCollectorOutage(t *testing.T) {
	c := testenv.StartOTelCollector(t)
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlp/collector": {Endpoint: c.GRPCEndpoint, TLS: TLSConfig{Insecure: true}, Signals: []string{SignalLogs, SignalTraces}, Retry: fastRetry()},
	}
	x, reg := startExporters(t, cfg)
	ctx := context.Background()
	_ = x.Logs().ConsumeLogs(ctx, makeLogs(0, 10))
	testenv.EventuallyTrue(t, time.Minute, "the first records", func() bool { ls, _ := c.LogRecords(); return len(ls) == 10 })

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		_ = x.Logs().ConsumeLogs(ctx, makeLogs(10+i*10, 10))
		_ = x.Traces().ConsumeTraces(ctx, makeTraces(2))
	}
	testenv.EventuallyTrue(t, time.Minute, "failed sends during the outage", func() bool {
		return counter(reg, "vigil_exporter_send_failed_total", "otlp/collector", SignalLogs) > 0
	})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// The collector's file exporter starts its files afresh, so the files
	// now hold what was queued during the outage: 300 records, 60 spans.
	testenv.EventuallyTrue(t, time.Minute, "300 records and 60 spans after the restart", func() bool {
		ls, _ := c.LogRecords()
		ss, _ := c.Spans()
		return len(ls) >= 300 && len(ss) >= 60
	})
	ls, _ := c.LogRecords()
	seen := map[string]int{}
	for _, l := range ls {
		seen[fmt.Sprint(l.Body)]++
	}
	if len(ls) != 300 {
		t.Errorf("%d records after the restart, want 300", len(ls))
	}
	for i := 10; i < 310; i++ {
		if seen[fmt.Sprintf("line %d", i)] != 1 {
			t.Fatalf("record %q arrived %d times", fmt.Sprintf("line %d", i), seen[fmt.Sprintf("line %d", i)])
		}
	}
	for _, sig := range []string{SignalLogs, SignalTraces} {
		if d := counter(reg, "vigil_exporter_dropped_total", "otlp/collector", sig); d != 0 {
			t.Errorf("%s dropped = %v, want 0", sig, d)
		}
	}
}

// TestLogsToVictoriaLogs sends log records over OTLP/HTTP to VictoriaLogs
// and reads them back with LogsQL, across an outage.
func TestLogsToVictoriaLogs(t *testing.T) {
	v := testenv.StartVictoriaLogs(t)
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		// otlphttp appends /v1/logs to the base URL.
		"otlphttp/victorialogs": {Endpoint: strings.TrimSuffix(v.OTLPLogsURL(), "/v1/logs"), Signals: []string{SignalLogs}, Retry: fastRetry()},
	}
	x, reg := startExporters(t, cfg)
	ctx := context.Background()
	_ = x.Logs().ConsumeLogs(ctx, makeLogs(0, 5))
	testenv.EventuallyTrue(t, time.Minute, "the first records to be sent", func() bool {
		return counter(reg, "vigil_exporter_sent_total", "otlphttp/victorialogs", SignalLogs) == 5
	})
	if err := v.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_ = x.Logs().ConsumeLogs(ctx, makeLogs(5+i*5, 5))
	}
	testenv.EventuallyTrue(t, time.Minute, "failed sends during the outage", func() bool {
		return counter(reg, "vigil_exporter_send_failed_total", "otlphttp/victorialogs", SignalLogs) > 0
	})
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, time.Minute, "every record to be sent after the restart", func() bool {
		return counter(reg, "vigil_exporter_sent_total", "otlphttp/victorialogs", SignalLogs) == 30
	})
	var rows []map[string]any
	testenv.EventuallyTrue(t, time.Minute, "VictoriaLogs to return 30 records", func() bool {
		_ = v.Flush(ctx)
		var err error
		rows, err = v.Query(ctx, `"line"`)
		return err == nil && len(rows) == 30
	})
	if rows[0]["k8s.pod.name"] != "cart-1" || rows[0]["host.name"] == nil {
		t.Errorf("resource attributes are not fields of the record: %v", rows[0])
	}
}
