package exporters

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// benchRegistry holds series counter series spread over 100 workloads, as
// a node with many pods would.
func benchRegistry(series int) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bench_container_cpu_seconds_total", Help: "CPU."},
		append([]string{"cpu"}, workload.LabelNames...))
	for i := range series {
		w := i % 100
		id := workload.Identity{Namespace: "ns" + strconv.Itoa(w%7), Pod: fmt.Sprintf("pod-%d", w), Container: "app",
			ContainerID: fmt.Sprintf("%064d", w), PodUID: fmt.Sprintf("uid-%d", w)}
		cv.WithLabelValues(append([]string{strconv.Itoa(i / 100)}, id.Labels()...)...).Add(float64(i))
	}
	reg.MustRegister(cv)
	return reg
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkExport measures gather → convert → encode → queue → send for
// 10,000 samples per iteration, against a sink in this process that only
// reads the request (HTTP) or decodes it (gRPC, done by the gRPC library).
// It reports samples exported per second and process CPU seconds per
// million samples (the sink's small share included).
func BenchmarkExport(b *testing.B) {
	const series = 10000
	for _, tc := range []struct{ name, typ string }{
		{"remotewrite", TypePrometheusRemoteWrite},
		{"otlp_grpc", TypeOTLP},
		{"otlp_http", TypeOTLPHTTP},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := &sink{t: &testing.T{}, discard: true}
			s.start()
			defer s.stop()
			e := &ExporterConfig{Signals: []string{SignalMetrics}, Retry: fastRetry()}
			switch tc.typ {
			case TypePrometheusRemoteWrite:
				e.Endpoint = s.url() + "/api/v1/write"
			case TypeOTLP:
				e.Endpoint, e.TLS.Insecure = s.grpcAddr, true
			default:
				e.Endpoint = s.url()
			}
			full := tc.typ + "/bench"
			cfg := NewConfig()
			cfg.Interval = time.Hour
			cfg.lookupEnv = env(nil)
			cfg.Targets = map[string]*ExporterConfig{full: e}
			reg := benchRegistry(series)
			x, err := New(cfg, Settings{Registerer: prometheus.NewRegistry(), Gatherer: reg, NodeName: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := x.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer x.Shutdown(ctx)
			sent := x.metrics.sent.WithLabelValues(full, SignalMetrics)
			cpu0 := cpuSeconds()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				x.mu.RLock()
				run := x.run
				x.mu.RUnlock()
				x.exportMetrics(ctx, run, time.Now())
				want := float64((i + 1) * series)
				for counterValue(sent) < want {
					time.Sleep(50 * time.Microsecond)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cpu := cpuSeconds() - cpu0
			samples := float64(b.N * series)
			b.ReportMetric(samples/elapsed.Seconds(), "samples/s")
			b.ReportMetric(cpu/samples*1e6, "cpu-s/Msamples")
			if d := counterValue(x.metrics.dropped.WithLabelValues(full, SignalMetrics)); d > 0 {
				b.Fatalf("%v samples dropped", d)
			}
		})
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m = &dtoMetric{}
	_ = c.Write(&m.Metric)
	return m.GetCounter().GetValue()
}

type dtoMetric struct{ dto.Metric }
