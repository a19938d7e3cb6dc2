package overhead

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakePrograms stands in for the eBPF collector where the test cannot
// have the privilege drop it is about: its programs' run time grows by
// perSecond CPU seconds each second.
type fakePrograms struct {
	start     time.Time
	perSecond float64
}

func (f *fakePrograms) ProgramCosts() ([]ProgramCost, error) {
	d := time.Duration(float64(time.Since(f.start)) * f.perSecond)
	return []ProgramCost{{Name: "http_sock_send", RunTime: d, RunCount: 1}}, nil
}

// TestGovernorWithoutStatsPrivilege: when BPF statistics cannot be
// enabled (CAP_SYS_ADMIN dropped), the kernel budget is not applied,
// vigil_overhead_kernel_stats_available is 0, and decisions go on.
func TestGovernorWithoutStatsPrivilege(t *testing.T) {
	progs := &fakePrograms{start: time.Now(), perSecond: 0.5} // far over the budget, were it measured
	var tries atomic.Int32
	reg := prometheus.NewRegistry()
	cfg := &Config{Enabled: true, KernelCPU: 0.01, Interval: 100 * time.Millisecond, KernelWindow: 20 * time.Millisecond,
		RecoverBelow: 0.5, ShedAfter: 1, RecoverAfter: 1, MaxLevel: int(MaxLevel)}
	g, err := New(cfg, Options{Registerer: reg, Parts: func() []any { return []any{progs} },
		EnableStats: func() (io.Closer, error) { tries.Add(1); return nil, errors.New("operation not permitted") }})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(g.m.decisions) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no decisions")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(g.m.statsAvailable); v != 0 {
		t.Errorf("vigil_overhead_kernel_stats_available = %v, want 0", v)
	}
	if g.Level() != LevelNone || testutil.ToFloat64(g.m.level) != 0 {
		t.Errorf("level %s without kernel statistics, want none (the kernel budget cannot be applied)", g.Level())
	}
	if tries.Load() < 3 {
		t.Errorf("statistics tried %d times, want once per decision", tries.Load())
	}
	// Shutdown unregistered the metrics: a new governor can register them.
	if _, err := New(cfg, Options{Registerer: reg}); err != nil {
		t.Errorf("a second governor on the same registry: %v", err)
	}
}

// TestGovernorMeasuresKernelWindow: with statistics enabled, the programs'
// run time over the window is their CPU ratio, and over budget it sheds.
func TestGovernorMeasuresKernelWindow(t *testing.T) {
	progs := &fakePrograms{start: time.Now(), perSecond: 0.5}
	reg := prometheus.NewRegistry()
	cfg := &Config{Enabled: true, KernelCPU: 0.01, Interval: 100 * time.Millisecond, KernelWindow: 50 * time.Millisecond,
		RecoverBelow: 0.5, ShedAfter: 1, RecoverAfter: 1, MaxLevel: int(MaxLevel)}
	g, err := New(cfg, Options{Registerer: reg, Parts: func() []any { return []any{progs} },
		EnableStats: func() (io.Closer, error) { return io.NopCloser(nil), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for g.Level() < LevelSpans {
		if time.Now().After(deadline) {
			t.Fatal("never shed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := testutil.ToFloat64(g.m.kernelCPU.WithLabelValues("http_sock_send")); v < 0.4 || v > 0.6 {
		t.Errorf("vigil_overhead_kernel_cpu_ratio{program=http_sock_send} = %v, want about 0.5", v)
	}
}
