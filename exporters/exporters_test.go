package exporters

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/component"
	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started once per process by the gRPC and HTTP client libraries.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startExporters builds and starts exporters for cfg against a registry
// holding one workload counter and one node gauge.
func startExporters(t *testing.T, cfg *Config) (*Exporters, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_requests_total", Help: "Requests."}, append([]string{"code"}, workload.LabelNames...))
	cv.WithLabelValues(append([]string{"200"}, workload.Identity{Namespace: "shop", Pod: "cart-1", Container: "cart", ContainerID: "abc", PodUID: "uid-1", OwnerKind: "Deployment", OwnerName: "cart"}.Labels()...)...).Add(7)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_node_load", Help: "Load."})
	g.Set(1.5)
	reg.MustRegister(cv, g)
	x, err := New(cfg, Settings{Logger: testLogger(t), NodeName: "node-a", Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := x.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return x, reg
}

func fastRetry() RetryConfig {
	return RetryConfig{InitialInterval: 50 * time.Millisecond, MaxInterval: 200 * time.Millisecond}
}

func makeLogs(first, n int) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	workload.Identity{Namespace: "shop", Pod: "cart-1"}.PutAttributes(rl.Resource().Attributes())
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := range n {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(1)
		lr.Body().SetStr(fmt.Sprintf("line %d", first+i))
	}
	return ld
}

func makeTraces(n int) ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		sp := ss.AppendEmpty()
		sp.SetName(fmt.Sprint("span ", i))
		sp.SetTraceID([16]byte{1, byte(i)})
		sp.SetSpanID([8]byte{2, byte(i)})
	}
	return td
}

func counter(reg *prometheus.Registry, name, target, signal string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var e, s string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "exporter":
					e = l.GetValue()
				case "signal":
					s = l.GetValue()
				}
			}
			if e == target && s == signal {
				if m.Counter != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// TestSeveralTargetsAtOnce sends metrics, logs and spans over OTLP/gRPC and
// OTLP/HTTP, and metrics with remote write, to one sink each.
func TestSeveralTargetsAtOnce(t *testing.T) {
	grpcSink, httpSink, rwSink := newSink(t), newSink(t), newSink(t)
	cfg := NewConfig()
	cfg.Interval = time.Hour // gathered on demand below
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlp/grpc":                  {Endpoint: grpcSink.grpcAddr, TLS: TLSConfig{Insecure: true}, Retry: fastRetry()},
		"otlphttp/http":              {Endpoint: httpSink.url(), Retry: fastRetry()},
		"prometheusremotewrite/prom": {Endpoint: rwSink.url() + "/api/v1/write", ExternalLabels: map[string]string{"cluster": "c1"}, Retry: fastRetry()},
	}
	x, reg := startExporters(t, cfg)
	ctx := context.Background()
	if err := x.Logs().ConsumeLogs(ctx, makeLogs(0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := x.Traces().ConsumeTraces(ctx, makeTraces(2)); err != nil {
		t.Fatal(err)
	}
	x.GatherNow()

	for _, s := range []*sink{grpcSink, httpSink} {
		testenv.EventuallyTrue(t, time.Minute, "OTLP metrics, logs and spans", func() bool {
			m, l, sp, _ := s.counts()
			return m > 0 && l == 3 && sp == 2
		})
	}
	// The sink has the data a moment before the exporter hears back.
	testenv.EventuallyTrue(t, time.Minute, "every queue to empty", func() bool {
		for _, tg := range []string{"otlp/grpc", "otlphttp/http", "prometheusremotewrite/prom"} {
			for _, sig := range []string{SignalMetrics, SignalLogs, SignalTraces} {
				if counter(reg, "vigil_exporter_queue_length", tg, sig) > 0 {
					return false
				}
			}
		}
		return counter(reg, "vigil_exporter_sent_total", "prometheusremotewrite/prom", SignalMetrics) > 0
	})

	// OTLP: the workload counter sits under the pod's resource, with
	// semantic-convention attributes, and only its own label on the point.
	grpcSink.mu.Lock()
	found := false
	for _, md := range grpcSink.metrics {
		rms := md.ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			res := rms.At(i).Resource().Attributes().AsRaw()
			ms := rms.At(i).ScopeMetrics().At(0).Metrics()
			for j := 0; j < ms.Len(); j++ {
				if ms.At(j).Name() != "test_requests_total" {
					continue
				}
				found = true
				if res[AttrK8sPodName] != "cart-1" || res[AttrK8sNamespaceName] != "shop" || res["k8s.deployment.name"] != "cart" ||
					res[AttrServiceName] != "cart" || res[AttrHostName] == nil || res[AttrOSType] != "linux" {
					t.Errorf("resource of the workload counter = %v", res)
				}
				if got := ms.At(j).Sum().DataPoints().At(0).Attributes().AsRaw(); len(got) != 1 || got["code"] != "200" {
					t.Errorf("point attributes = %v, want only code", got)
				}
				if !ms.At(j).Sum().IsMonotonic() || ms.At(j).Sum().DataPoints().At(0).DoubleValue() != 7 {
					t.Error("counter did not arrive as a monotonic sum of 7")
				}
			}
		}
	}
	// Logs keep their workload resource and gain the node's.
	lres := grpcSink.logs[0].ResourceLogs().At(0).Resource().Attributes().AsRaw()
	grpcSink.mu.Unlock()
	if !found {
		t.Error("test_requests_total not received over gRPC")
	}
	if lres[AttrK8sPodName] != "cart-1" || lres[AttrHostName] == nil {
		t.Errorf("log resource = %v", lres)
	}

	// Remote write: Prometheus names and labels, job/instance from the
	// node, the external label.
	rwSink.mu.Lock()
	var series []string
	for _, ts := range rwSink.series {
		var b strings.Builder
		for _, l := range ts.Labels {
			fmt.Fprintf(&b, "%s=%q,", l.Name, l.Value)
		}
		series = append(series, b.String())
	}
	rwSink.mu.Unlock()
	want := `__name__="test_requests_total",cluster="c1",code="200",container="cart",container_id="abc",instance="node-a",job="vigil",namespace="shop",owner_kind="Deployment",owner_name="cart",pod="cart-1",pod_uid="uid-1",`
	if !contains(series, want) {
		t.Errorf("remote write lacks %s; got:\n%s", want, strings.Join(series, "\n"))
	}

	if got := counter(reg, "vigil_exporter_sent_total", "otlp/grpc", SignalLogs); got != 3 {
		t.Errorf("sent logs = %v, want 3", got)
	}
	if got := counter(reg, "vigil_exporter_sent_total", "otlphttp/http", SignalTraces); got != 2 {
		t.Errorf("sent spans = %v, want 2", got)
	}
	if got := counter(reg, "vigil_exporter_dropped_total", "prometheusremotewrite/prom", SignalMetrics); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP vigil_exporter_queue_length Samples, log records or spans waiting in the queue.
# TYPE vigil_exporter_queue_length gauge
vigil_exporter_queue_length{exporter="otlp/grpc",signal="logs"} 0
vigil_exporter_queue_length{exporter="otlp/grpc",signal="metrics"} 0
vigil_exporter_queue_length{exporter="otlp/grpc",signal="traces"} 0
vigil_exporter_queue_length{exporter="otlphttp/http",signal="logs"} 0
vigil_exporter_queue_length{exporter="otlphttp/http",signal="metrics"} 0
vigil_exporter_queue_length{exporter="otlphttp/http",signal="traces"} 0
vigil_exporter_queue_length{exporter="prometheusremotewrite/prom",signal="metrics"} 0
`), "vigil_exporter_queue_length"); err != nil {
		t.Error(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestOutageWithinBoundLosesNothing stops the backend, keeps producing,
// restarts it and counts: every record arrives, in order, none dropped.
func TestOutageWithinBoundLosesNothing(t *testing.T) {
	s := newSink(t)
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlphttp/backend": {Endpoint: s.url(), Signals: []string{SignalLogs}, Retry: fastRetry(), Queue: QueueConfig{MaxItems: 1000}},
	}
	x, reg := startExporters(t, cfg)
	ctx := context.Background()
	_ = x.Logs().ConsumeLogs(ctx, makeLogs(0, 10))
	testenv.EventuallyTrue(t, time.Minute, "the first records", func() bool { return len(s.logBodies()) == 10 })

	s.stop()
	for i := range 50 {
		_ = x.Logs().ConsumeLogs(ctx, makeLogs(10+i*10, 10))
	}
	testenv.EventuallyTrue(t, time.Minute, "failed sends during the outage", func() bool {
		return counter(reg, "vigil_exporter_send_failed_total", "otlphttp/backend", SignalLogs) > 0
	})
	if q := counter(reg, "vigil_exporter_queue_length", "otlphttp/backend", SignalLogs); q != 500 {
		t.Errorf("queue length during the outage = %v, want 500", q)
	}
	s.restart()
	testenv.EventuallyTrue(t, time.Minute, "every record after the restart", func() bool { return len(s.logBodies()) >= 510 })
	got := s.logBodies()
	if len(got) != 510 {
		t.Fatalf("received %d records, want 510", len(got))
	}
	for i, b := range got {
		if b != fmt.Sprintf("line %d", i) {
			t.Fatalf("record %d is %q: out of order or lost", i, b)
		}
	}
	if d := counter(reg, "vigil_exporter_dropped_total", "otlphttp/backend", SignalLogs); d != 0 {
		t.Errorf("dropped = %v, want 0", d)
	}
	testenv.EventuallyTrue(t, time.Minute, "sent_total to reach 510", func() bool {
		return counter(reg, "vigil_exporter_sent_total", "otlphttp/backend", SignalLogs) == 510
	})
}

// TestOutageBeyondBoundDropsOldest overfills the queue during an outage:
// the newest records arrive, the oldest are dropped, and
// vigil_exporter_dropped_total says how many.
func TestOutageBeyondBoundDropsOldest(t *testing.T) {
	s := newSink(t)
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlp/backend": {Endpoint: s.grpcAddr, TLS: TLSConfig{Insecure: true}, Signals: []string{SignalLogs}, Retry: fastRetry(), Queue: QueueConfig{MaxItems: 200}},
	}
	x, reg := startExporters(t, cfg)
	s.stop()
	ctx := context.Background()
	for i := range 100 {
		_ = x.Logs().ConsumeLogs(ctx, makeLogs(i*10, 10))
	}
	// 1000 produced, 200 fit. A request in flight when the outage starts
	// is kept (it counts against the bound), so the newest 190 at least
	// arrive.
	s.restart()
	testenv.EventuallyTrue(t, time.Minute, "the queue to empty", func() bool {
		return counter(reg, "vigil_exporter_queue_length", "otlp/backend", SignalLogs) == 0
	})
	got := s.logBodies()
	dropped := counter(reg, "vigil_exporter_dropped_total", "otlp/backend", SignalLogs)
	if float64(len(got))+dropped != 1000 {
		t.Errorf("received %d + dropped %v != 1000 produced", len(got), dropped)
	}
	if len(got) != 200 {
		t.Fatalf("received %d, want the bound, 200", len(got))
	}
	for i, b := range got[10:] {
		if b != fmt.Sprintf("line %d", 810+i) {
			t.Fatalf("record %d is %q; the newest records must arrive in order", 10+i, b)
		}
	}
}

// TestPersistentQueueSurvivesRestart queues records while the backend is
// down, restarts the exporters, then brings the backend back.
func TestPersistentQueueSurvivesRestart(t *testing.T) {
	s := newSink(t)
	s.stop()
	dir := t.TempDir()
	mk := func() *Config {
		cfg := NewConfig()
		cfg.Interval = time.Hour
		cfg.lookupEnv = env(nil)
		cfg.Targets = map[string]*ExporterConfig{
			"otlphttp/backend": {Endpoint: s.url(), Signals: []string{SignalLogs, SignalTraces}, Retry: fastRetry(), Queue: QueueConfig{Directory: dir}},
		}
		return cfg
	}
	reg := prometheus.NewRegistry()
	x, err := New(mk(), Settings{Logger: testLogger(t), Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := x.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		_ = x.Logs().ConsumeLogs(ctx, makeLogs(i*5, 5))
	}
	_ = x.Traces().ConsumeTraces(ctx, makeTraces(4))
	if err := x.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := counter(reg, "vigil_exporter_dropped_total", "otlphttp/backend", SignalLogs); d != 0 {
		t.Fatalf("dropped at shutdown = %v: a persistent queue must keep its records", d)
	}

	s.restart()
	x2, _ := startExporters(t, mk())
	_ = x2
	testenv.EventuallyTrue(t, time.Minute, "the records queued before the restart", func() bool {
		_, l, sp, _ := s.counts()
		return l == 100 && sp == 4
	})
	for i, b := range s.logBodies() {
		if b != fmt.Sprintf("line %d", i) {
			t.Fatalf("record %d is %q", i, b)
		}
	}
}

// TestMemoryBoundedUnderSlowBackend pushes far more log data than the
// queue holds at a backend that takes seconds per request: the heap stays
// near the queue's bound and the excess is counted as dropped.
func TestMemoryBoundedUnderSlowBackend(t *testing.T) {
	s := newSink(t)
	s.delay = 2 * time.Second
	const maxBytes = 8 << 20
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlphttp/slow": {Endpoint: s.url(), Signals: []string{SignalLogs}, Compression: "none", Retry: fastRetry(), Queue: QueueConfig{MaxBytes: maxBytes}},
	}
	x, reg := startExporters(t, cfg)
	ctx := context.Background()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// 256 MiB in records of 1 KiB, 1000 per request.
	line := strings.Repeat("x", 1024)
	var produced int64
	for range 256 {
		ld := plog.NewLogs()
		lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
		for range 1000 {
			lrs.AppendEmpty().Body().SetStr(line)
		}
		produced += 1000
		_ = x.Logs().ConsumeLogs(ctx, ld)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	if qb := counter(reg, "vigil_exporter_queue_bytes", "otlphttp/slow", SignalLogs); qb > maxBytes {
		t.Errorf("queue holds %v bytes, bound %d", qb, maxBytes)
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// The queue's bound, plus the request being sent (decoded and encoded)
	// and slack for the runtime: far below the 256 MiB produced.
	if limit := int64(4 * maxBytes); growth > limit {
		t.Errorf("heap grew by %d MiB while producing 256 MiB against a slow backend; bound %d MiB", growth>>20, limit>>20)
	}
	dropped := counter(reg, "vigil_exporter_dropped_total", "otlphttp/slow", SignalLogs)
	if dropped < float64(produced)*0.9 {
		t.Errorf("dropped = %v of %d produced; the excess must be counted", dropped, produced)
	}
	t.Logf("heap growth %d MiB, dropped %v of %d records", growth>>20, dropped, produced)
}

// TestReloadLosesNothing reloads the configuration again and again while
// log records keep coming, with the backend up and then down, for a target
// with an in-memory queue and one with a persistent queue: every record
// arrives through both once the backend is back, and none is counted as
// dropped.
func TestReloadLosesNothing(t *testing.T) {
	s := newSink(t)
	dir := t.TempDir()
	targets := []string{"otlphttp/memory", "otlphttp/disk"}
	newCfg := func(environment string) *Config {
		cfg := NewConfig()
		cfg.Interval = time.Hour
		cfg.lookupEnv = env(nil)
		cfg.ResourceAttributes = map[string]string{"deployment.environment.name": environment}
		cfg.Targets = map[string]*ExporterConfig{
			"otlphttp/memory": {Endpoint: s.url(), Signals: []string{SignalLogs}, Retry: fastRetry(), Queue: QueueConfig{MaxItems: 100000}},
			"otlphttp/disk":   {Endpoint: s.url(), Signals: []string{SignalLogs}, Retry: fastRetry(), Queue: QueueConfig{MaxItems: 100000, Directory: dir}},
		}
		return cfg
	}
	x, reg := startExporters(t, newCfg("a"))
	ctx := context.Background()

	const producers, batches = 2, 300
	produce := func() *sync.WaitGroup {
		var wg sync.WaitGroup
		for p := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range batches {
					_ = x.Logs().ConsumeLogs(ctx, makeLogs((p*batches+i)*2, 2))
				}
			}()
		}
		return &wg
	}
	reloadWhile := func(wg *sync.WaitGroup) int {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		n := 0
		for {
			select {
			case <-done:
				return n
			default:
			}
			if err := x.ApplyConfig(ctx, newCfg(fmt.Sprint("env-", n))); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}

	// Backend up.
	if n := reloadWhile(produce()); n == 0 {
		t.Fatal("no reload happened while producing")
	}
	const total = producers * batches * 2
	testenv.EventuallyTrue(t, time.Minute, "every record with the backend up", func() bool { return len(s.logBodies()) >= 2*total })

	// Backend down: the in-memory queue moves from one configuration to
	// the next, and arrives once the backend is back.
	s.stop()
	s.mu.Lock()
	s.logs = nil
	s.mu.Unlock()
	if n := reloadWhile(produce()); n == 0 {
		t.Fatal("no reload happened while producing")
	}
	if err := x.ApplyConfig(ctx, newCfg("last")); err != nil {
		t.Fatal(err)
	}
	s.restart()
	testenv.EventuallyTrue(t, time.Minute, "every record through both targets after the backend is back", func() bool {
		return counter(reg, "vigil_exporter_sent_total", targets[0], SignalLogs) >= 2*total &&
			counter(reg, "vigil_exporter_sent_total", targets[1], SignalLogs) >= 2*total
	})

	seen := map[string]int{}
	for _, b := range s.logBodies() {
		seen[b]++
	}
	for i := range total {
		if seen[fmt.Sprintf("line %d", i)] < 2 {
			t.Errorf("record %d arrived %d times after the outage, want once per target", i, seen[fmt.Sprintf("line %d", i)])
		}
	}
	for _, target := range targets {
		if d := counter(reg, "vigil_exporter_dropped_total", target, SignalLogs); d != 0 {
			t.Errorf("%s dropped = %v, want 0", target, d)
		}
	}
}

// TestReloadDropsAreCounted removes a target whose backend is down: its
// queued records have nowhere to go and are counted as dropped.
func TestReloadDropsAreCounted(t *testing.T) {
	s := newSink(t)
	s.stop()
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlphttp/old":  {Endpoint: s.url(), Signals: []string{SignalLogs}, Retry: fastRetry()},
		"otlphttp/kept": {Endpoint: s.url(), Signals: []string{SignalLogs}, Retry: fastRetry()},
	}
	x, reg := startExporters(t, cfg)
	ctx := context.Background()
	_ = x.Logs().ConsumeLogs(ctx, makeLogs(0, 7))
	testenv.EventuallyTrue(t, time.Minute, "failed sends", func() bool {
		return counter(reg, "vigil_exporter_send_failed_total", "otlphttp/old", SignalLogs) > 0
	})
	next := NewConfig()
	next.Interval = time.Hour
	next.lookupEnv = env(nil)
	next.Targets = map[string]*ExporterConfig{
		"otlphttp/kept": {Endpoint: s.url(), Signals: []string{SignalLogs}, Retry: fastRetry()},
	}
	if err := x.ApplyConfig(ctx, next); err != nil {
		t.Fatal(err)
	}
	if d := counter(reg, "vigil_exporter_dropped_total", "otlphttp/old", SignalLogs); d != 7 {
		t.Errorf("dropped by the removed target = %v, want 7", d)
	}
	s.restart()
	testenv.EventuallyTrue(t, time.Minute, "the kept target to deliver its 7 records", func() bool { return len(s.logBodies()) == 7 })
	if d := counter(reg, "vigil_exporter_dropped_total", "otlphttp/kept", SignalLogs); d != 0 {
		t.Errorf("dropped by the kept target = %v, want 0", d)
	}
}

// TestTracesWantedOnlyWithATraceTarget: the traces consumer says it wants
// spans (component.Wanter, asked by the eBPF collector before it builds
// one) only while a target with the traces signal runs, through reloads
// that add and remove it; spans it takes then reach the target.
func TestTracesWantedOnlyWithATraceTarget(t *testing.T) {
	s := newSink(t)
	withSignals := func(sigs ...string) *Config {
		cfg := NewConfig()
		cfg.Interval = time.Hour
		cfg.lookupEnv = env(nil)
		cfg.Targets = map[string]*ExporterConfig{
			"otlphttp/central": {Endpoint: s.url(), Signals: sigs, Retry: fastRetry()},
		}
		return cfg
	}
	x, reg := startExporters(t, withSignals(SignalMetrics, SignalLogs))
	traces := x.Traces()
	if component.Wanted(traces) {
		t.Fatal("traces wanted with only metrics and logs targets")
	}
	ctx := context.Background()
	if err := x.ApplyConfig(ctx, withSignals(SignalTraces)); err != nil {
		t.Fatal(err)
	}
	if !component.Wanted(traces) {
		t.Fatal("traces not wanted after a reload added the traces signal")
	}
	if err := traces.ConsumeTraces(ctx, makeTraces(3)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for counter(reg, "vigil_exporter_sent_total", "otlphttp/central", SignalTraces) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("spans sent = %v, want 3", counter(reg, "vigil_exporter_sent_total", "otlphttp/central", SignalTraces))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := x.ApplyConfig(ctx, withSignals(SignalMetrics)); err != nil {
		t.Fatal(err)
	}
	if component.Wanted(traces) {
		t.Fatal("traces still wanted after a reload removed the traces signal")
	}
}
