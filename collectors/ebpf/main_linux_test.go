//go:build linux

package ebpf

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.uber.org/goleak"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/internal/event"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// helperEnv makes the test binary act as a helper process (an HTTP client,
// a connector) instead of running tests; see runHelper.
const helperEnv = "VIGIL_EBPF_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h, os.Args[len(os.Args)-1]))
	}
	goleak.VerifyTestMain(m)
}

// testEnv is a started collector with everything it publishes captured.
type testEnv struct {
	c    *collector
	reg  *prometheus.Registry
	bus  *event.Bus
	sub  *event.Subscription
	sink *consumertest.TracesSink
}

// updateAdapter exposes a collectors.Collector to a Prometheus registry,
// the way the agent's /metrics does.
type updateAdapter struct{ c collectors.Collector }

func (a updateAdapter) Describe(chan<- *prometheus.Desc) {}
func (a updateAdapter) Collect(ch chan<- prometheus.Metric) {
	_ = a.c.Update(context.Background(), ch)
}

// startCollector starts the collector with cfg (nil: the defaults); opts
// may change the settings it gets (an enricher, for example).
func startCollector(t *testing.T, cfg *Config, opts ...func(*collectors.Settings)) *testEnv {
	t.Helper()
	return startCollectorPretending(t, cfg, nil, opts...)
}

// startCollectorPretending is startCollector with the kernel's features,
// once discovered, changed by pretend (when not nil): a stand-in for a
// kernel that lacks one.
func startCollectorPretending(t *testing.T, cfg *Config, pretend func(*capabilities), opts ...func(*collectors.Settings)) *testEnv {
	t.Helper()
	testenv.RequireRoot(t, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	if cfg == nil {
		cfg = NewConfig()
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{bus: event.NewBus(), sink: new(consumertest.TracesSink), reg: prometheus.NewRegistry()}
	env.sub = env.bus.Subscribe(1024)
	set := collectors.Settings{
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", Name),
		Paths:  collectors.Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"},
		Events: env.bus, Traces: env.sink, NodeName: "test-node",
	}
	for _, o := range opts {
		o(&set)
	}
	c, err := newCollector(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	env.c = c.(*collector)
	if pretend != nil {
		discovered := env.c.probe
		env.c.probe = func(cfg *Config, log *slog.Logger) *capabilities {
			caps := discovered(cfg, log)
			pretend(caps)
			return caps
		}
	}
	if err := env.c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.c.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		env.sub.Close()
	})
	env.reg.MustRegister(updateAdapter{env.c})
	return env
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// value sums the samples of metric name whose labels include want: the
// value of counters and gauges, the sample count of histograms.
func (e *testEnv) value(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestProgramsLoad starts the defaults: every program loads, and HTTP is
// seen at the socket layer where the kernel allows (the syscall path is
// then not attached).
func TestProgramsLoad(t *testing.T) {
	env := startCollector(t, nil)
	for _, p := range programs {
		if p.httpHook != "" {
			continue
		}
		if v := env.value(t, "vigil_ebpf_program_loaded", map[string]string{"program": p.name}); v != 1 {
			t.Errorf("vigil_ebpf_program_loaded{program=%q} = %v, want 1", p.name, v)
		}
	}
	hook := "syscalls"
	if kernelHasSocketTracepoints() {
		hook = "socket"
	} else if os.Getenv("CI") == "true" {
		t.Error("the kernel lacks the socket-layer tracepoints, which CI's kernel has")
	}
	requireHTTPHook(t, env, hook)
	for _, f := range []string{"btf", "ringbuf", "tp_btf", "tracepoint", "tracefs", "uprobe"} {
		if v := env.value(t, "vigil_ebpf_feature_available", map[string]string{"feature": f}); v != 1 {
			t.Errorf("vigil_ebpf_feature_available{feature=%q} = %v, want 1", f, v)
		}
	}
	// uprobe_multi links: Linux 6.6+, which CI's kernel is.
	if v := env.value(t, "vigil_ebpf_feature_available", map[string]string{"feature": "uprobe_multi"}); v != 1 && os.Getenv("CI") == "true" {
		t.Errorf("vigil_ebpf_feature_available{feature=\"uprobe_multi\"} = %v, want 1 on CI's kernel", v)
	}
}
