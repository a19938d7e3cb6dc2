//go:build linux

package overhead_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/ebpf"
	"github.com/vigil-agent/vigil/component"
	"github.com/vigil-agent/vigil/internal/event"
	"github.com/vigil-agent/vigil/internal/overhead"
	"github.com/vigil-agent/vigil/internal/testenv"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startEBPF starts the real eBPF collector with its TCP and HTTP programs.
func startEBPF(t *testing.T, log *slog.Logger) collectors.Collector {
	t.Helper()
	f, ok := component.Lookup(component.KindCollector, ebpf.Name)
	if !ok {
		t.Fatal("the ebpf collector is not registered")
	}
	cfg := f.NewConfig().(*ebpf.Config)
	cfg.Programs = ebpf.ProgramsConfig{TCP: true, HTTP: true}
	c, err := f.NewCollector(cfg, collectors.Settings{Logger: log.With("component", "ebpf"), Events: event.NewBus(),
		Traces: consumertest.NewNop(), Paths: collectors.Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(collectors.Lifecycle).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.(collectors.Lifecycle).Shutdown(context.Background()) })
	return c
}

// gauge reads one sample of a metric from reg: the value of the series
// whose labels include want (summed over matches).
func gauge(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue metric
				}
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// httpLoad sends requests on conns keep-alive connections until stop is
// closed, and returns how many it sent.
func httpLoad(t *testing.T, url string, conns int, stop <-chan struct{}) func() int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Transport: &http.Transport{}}
			defer cl.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := cl.Get(url)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	return func() int64 { wg.Wait(); return n.Load() }
}

// TestGovernorShedsAndRecoversUnderRealHTTPLoad pushes the eBPF programs'
// kernel CPU over a small budget with real HTTP traffic through the real
// programs: the governor measures them with BPF statistics, sheds down to
// HTTP sampling at least, and recovers to level 0 once the traffic stops.
func TestGovernorShedsAndRecoversUnderRealHTTPLoad(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs and enabling BPF statistics")
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	c := startEBPF(t, log)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })

	// A budget of 1% of a core for the programs, none for the agent
	// process (which here is also the load generator). The load below
	// costs the programs several times that; the node's other traffic,
	// which the programs see too, far less.
	cfg := &overhead.Config{Enabled: true, KernelCPU: 0.01, Interval: 400 * time.Millisecond, KernelWindow: 200 * time.Millisecond,
		RecoverBelow: 0.5, ShedAfter: 1, RecoverAfter: 2, MaxLevel: int(overhead.MaxLevel)}
	reg := prometheus.NewRegistry()
	g, err := overhead.New(cfg, overhead.Options{Logger: log.With("component", "overhead"), Registerer: reg,
		Parts: func() []any { return []any{c} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	level := func() float64 { return gauge(t, reg, "vigil_overhead_shed_level", nil) }
	decisions := func() float64 { return gauge(t, reg, "vigil_overhead_decisions_total", nil) }

	// At rest: measured, and within the budget.
	testenv.EventuallyTrue(t, 90*time.Second, "two decisions at rest", func() bool { return decisions() >= 2 })
	if v := gauge(t, reg, "vigil_overhead_kernel_stats_available", nil); v != 1 {
		t.Fatalf("vigil_overhead_kernel_stats_available = %v at rest, want 1 (root can enable BPF statistics)", v)
	}
	idle := gauge(t, reg, "vigil_overhead_kernel_cpu_total_ratio", nil)
	t.Logf("programs at rest: %.5f CPU", idle)
	if l := level(); l != 0 {
		t.Fatalf("shed level %v at rest (programs at %.5f CPU against a budget of %v): the node's own traffic is over the test's budget", l, idle, cfg.KernelCPU)
	}
	if b := gauge(t, reg, "vigil_overhead_budget_ratio", map[string]string{"scope": "kernel"}); b != cfg.KernelCPU {
		t.Errorf("vigil_overhead_budget_ratio{scope=kernel} = %v, want %v", b, cfg.KernelCPU)
	}

	// Under load: the HTTP programs' cost is seen and the governor sheds
	// at least down to HTTP sampling.
	stop := make(chan struct{})
	sent := httpLoad(t, "http://"+ln.Addr().String()+"/load", 4, stop)
	var loaded, httpProg float64
	testenv.EventuallyTrue(t, 90*time.Second, "shed level http_sample under load", func() bool {
		if v := gauge(t, reg, "vigil_overhead_kernel_cpu_total_ratio", nil); v > loaded {
			loaded = v
		}
		for _, p := range []string{"http_sock_send", "http_sock_recv", "http_write", "http_exit_read"} {
			if v := gauge(t, reg, "vigil_overhead_kernel_cpu_ratio", map[string]string{"program": p}); v > httpProg {
				httpProg = v
			}
		}
		return level() >= float64(overhead.LevelHTTPSample)
	})
	close(stop)
	n := sent()
	t.Logf("under load: %d requests, programs at up to %.5f CPU (an HTTP program alone up to %.5f), level %v", n, loaded, httpProg, level())
	if loaded <= cfg.KernelCPU || httpProg <= 0 {
		t.Errorf("the load's kernel CPU (%.5f, HTTP program %.5f) was never measured over the budget %v", loaded, httpProg, cfg.KernelCPU)
	}
	if s := gauge(t, reg, "vigil_overhead_level_changes_total", map[string]string{"change": "shed"}); s < 2 {
		t.Errorf("vigil_overhead_level_changes_total{change=shed} = %v, want at least 2", s)
	}

	// Traffic gone: back to level 0, one level at a time.
	testenv.EventuallyTrue(t, 90*time.Second, "recovery to level 0 at rest", func() bool { return level() == 0 })
	if r := gauge(t, reg, "vigil_overhead_level_changes_total", map[string]string{"change": "recover"}); r < 2 {
		t.Errorf("vigil_overhead_level_changes_total{change=recover} = %v, want at least 2", r)
	}
	if g.Level() != overhead.LevelNone {
		t.Errorf("governor level %s after recovery", g.Level())
	}
}

// TestGovernorAgentBudget pushes the agent process's own CPU over its
// budget (a goroutine that computes) and sees the level shed and recover;
// no kernel budget.
func TestGovernorAgentBudget(t *testing.T) {
	cfg := &overhead.Config{Enabled: true, AgentCPU: 0.05, Interval: 300 * time.Millisecond, KernelWindow: 100 * time.Millisecond,
		RecoverBelow: 0.5, ShedAfter: 1, RecoverAfter: 1, MaxLevel: int(overhead.MaxLevel)}
	reg := prometheus.NewRegistry()
	var shed shedRecorder
	g, err := overhead.New(cfg, overhead.Options{Registerer: reg, Parts: func() []any { return []any{&shed} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		x := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range 100000 {
				x += i
			}
			_ = x
		}
	}()
	testenv.EventuallyTrue(t, 90*time.Second, "a shed level while the agent computes", func() bool { return gauge(t, reg, "vigil_overhead_shed_level", nil) >= 1 })
	if a := gauge(t, reg, "vigil_overhead_agent_cpu_ratio", nil); a <= cfg.AgentCPU {
		t.Errorf("vigil_overhead_agent_cpu_ratio = %v while computing, want over the budget %v", a, cfg.AgentCPU)
	}
	if v := gauge(t, reg, "vigil_overhead_kernel_stats_available", nil); v != 0 {
		t.Errorf("vigil_overhead_kernel_stats_available = %v without eBPF programs, want 0", v)
	}
	if shed.level() < overhead.LevelSpans {
		t.Errorf("the shedder was given level %s", shed.level())
	}
	close(stop)
	wg.Wait()
	testenv.EventuallyTrue(t, 90*time.Second, "recovery once the agent is quiet", func() bool { return gauge(t, reg, "vigil_overhead_shed_level", nil) == 0 })
	if shed.level() != overhead.LevelNone {
		t.Errorf("the shedder was left at level %s", shed.level())
	}
}

// shedRecorder is a Shedder that remembers the last level it was given.
type shedRecorder struct{ l atomic.Int32 }

func (s *shedRecorder) SetShedLevel(l overhead.Level) { s.l.Store(int32(l)) }
func (s *shedRecorder) level() overhead.Level         { return overhead.Level(s.l.Load()) }
