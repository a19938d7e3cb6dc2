package overhead

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProgramCost is one eBPF program's cumulative kernel run time and run
// count, as the kernel's BPF statistics count them (they only grow while
// the statistics are enabled).
type ProgramCost struct {
	Name     string
	RunTime  time.Duration
	RunCount uint64
}

// KernelCoster is a part of the agent that runs eBPF programs: the eBPF
// collector.
type KernelCoster interface {
	ProgramCosts() ([]ProgramCost, error)
}

// Options are what the governor gets from the agent.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Parts returns the agent's running parts; those that implement
	// Shedder or KernelCoster are used. It is asked at every decision, so
	// that parts rebuilt by a reload are found.
	Parts func() []any

	// EnableStats turns the kernel's BPF run-time statistics on until the
	// returned closer is closed; nil means the kernel's BPF_ENABLE_STATS.
	EnableStats func() (io.Closer, error)
	// CPUTime is the process's CPU time so far; nil means getrusage.
	CPUTime func() time.Duration
}

// Governor measures and decides every interval; see the package doc.
type Governor struct {
	opts Options
	log  *slog.Logger
	m    *metrics

	mu     sync.Mutex
	cfg    *Config
	state  State
	cancel context.CancelFunc
	done   chan struct{}
	// statsErr is the last reason the statistics could not be enabled and
	// were not on, logged when it changes.
	statsErr string
}

type metrics struct {
	agentCPU       prometheus.Gauge
	kernelCPU      *prometheus.GaugeVec
	kernelTotal    prometheus.Gauge
	budget         *prometheus.GaugeVec
	level          prometheus.Gauge
	changes        *prometheus.CounterVec
	decisions      prometheus.Counter
	statsAvailable prometheus.Gauge
	all            []prometheus.Collector
	registerer     prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		agentCPU: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_overhead_agent_cpu_ratio",
			Help: "CPU seconds per second the agent process used over the last overhead interval (1 is one core)."}),
		kernelCPU: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_overhead_kernel_cpu_ratio",
			Help: "CPU seconds per second the kernel spent running the agent's eBPF program, over the last statistics window."}, []string{"program"}),
		kernelTotal: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_overhead_kernel_cpu_total_ratio",
			Help: "CPU seconds per second the kernel spent running all of the agent's eBPF programs over the last statistics window (what the kernel budget is compared with)."}),
		budget: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_overhead_budget_ratio",
			Help: "The overhead budget in CPU seconds per second, by scope (agent, kernel); 0 is no budget."}, []string{"scope"}),
		level: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_overhead_shed_level",
			Help: "How much load the agent sheds to stay within its overhead budget: 0 none, 1 spans, 2 http_sample, 3 intervals, 4 http_minimal."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_overhead_level_changes_total",
			Help: "Shed level changes, by change (shed, recover)."}, []string{"change"}),
		decisions: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_overhead_decisions_total",
			Help: "Overhead measurements and decisions taken."}),
		statsAvailable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_overhead_kernel_stats_available",
			Help: "Whether the last window could measure the eBPF programs (1) or not (0: no programs, or BPF statistics could not be enabled, which needs CAP_SYS_ADMIN)."}),
		registerer: reg,
	}
	m.changes.WithLabelValues("shed")
	m.changes.WithLabelValues("recover")
	m.all = []prometheus.Collector{m.agentCPU, m.kernelCPU, m.kernelTotal, m.budget, m.level, m.changes, m.decisions, m.statsAvailable}
	if reg != nil {
		for i, c := range m.all {
			if err := reg.Register(c); err != nil {
				for _, r := range m.all[:i] {
					reg.Unregister(r)
				}
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m.registerer == nil {
		return
	}
	for _, c := range m.all {
		m.registerer.Unregister(c)
	}
}

// New builds a governor; nothing runs until Start.
func New(cfg *Config, opts Options) (*Governor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Parts == nil {
		opts.Parts = func() []any { return nil }
	}
	if opts.EnableStats == nil {
		opts.EnableStats = enableStats
	}
	if opts.CPUTime == nil {
		opts.CPUTime = processCPUTime
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	g := &Governor{opts: opts, log: opts.Logger, m: m, cfg: cfg, state: InitialState()}
	g.setBudget(cfg)
	return g, nil
}

func (g *Governor) setBudget(cfg *Config) {
	g.m.budget.WithLabelValues("agent").Set(cfg.AgentCPU)
	g.m.budget.WithLabelValues("kernel").Set(cfg.KernelCPU)
}

// Level returns the level in force.
func (g *Governor) Level() Level {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state.Level
}

// Start runs the measurement loop until Shutdown.
func (g *Governor) Start(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan struct{})
	go func() {
		defer close(g.done)
		g.loop(ctx)
	}()
	g.log.Info("overhead governor started", "agent_cpu", g.cfg.AgentCPU, "kernel_cpu", g.cfg.KernelCPU,
		"interval", g.cfg.Interval, "kernel_window", g.cfg.KernelWindow)
	return nil
}

// Shutdown stops the loop, gives every part its full load back and
// unregisters the metrics; it is safe without Start.
func (g *Governor) Shutdown(context.Context) error {
	g.mu.Lock()
	cancel, done := g.cancel, g.done
	g.cancel = nil
	g.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	g.mu.Lock()
	g.state = InitialState()
	g.mu.Unlock()
	g.apply(LevelNone)
	g.m.unregister()
	return nil
}

// ApplyConfig takes a new configuration; the level and counts carry over.
func (g *Governor) ApplyConfig(_ context.Context, cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	g.mu.Lock()
	g.cfg = cfg
	if g.state.Level > Level(cfg.MaxLevel) {
		g.state.Level = Level(cfg.MaxLevel)
	}
	g.mu.Unlock()
	g.setBudget(cfg)
	return nil
}

func (g *Governor) config() *Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

// loop measures the agent's CPU over each interval and the programs' over
// its last KernelWindow, then decides.
func (g *Governor) loop(ctx context.Context) {
	lastCPU, lastAt := g.opts.CPUTime(), time.Now()
	for {
		cfg := g.config()
		if !sleep(ctx, cfg.Interval-cfg.KernelWindow) {
			return
		}
		kernel, known, ok := g.kernelWindow(ctx, cfg.KernelWindow)
		if !ok {
			return
		}
		cpu, now := g.opts.CPUTime(), time.Now()
		u := Usage{KernelCPU: kernel, KernelKnown: known}
		if d := now.Sub(lastAt); d > 0 {
			u.AgentCPU = float64(cpu-lastCPU) / float64(d)
		}
		lastCPU, lastAt = cpu, now
		g.decide(cfg, u)
	}
}

// decide takes one decision and applies its level.
func (g *Governor) decide(cfg *Config, u Usage) {
	g.mu.Lock()
	prev := g.state.Level
	var change Change
	g.state, change = Decide(cfg.Policy(), g.state, u)
	level := g.state.Level
	g.mu.Unlock()
	g.m.decisions.Inc()
	g.m.agentCPU.Set(u.AgentCPU)
	g.m.level.Set(float64(level))
	if change != Hold {
		g.m.changes.WithLabelValues(change.String()).Inc()
		g.log.Info("overhead: shed level changed", "change", change.String(), "from", prev.String(), "to", level.String(),
			"agent_cpu", u.AgentCPU, "kernel_cpu", u.KernelCPU, "kernel_measured", u.KernelKnown,
			"agent_budget", cfg.AgentCPU, "kernel_budget", cfg.KernelCPU)
	}
	g.apply(level)
}

// apply gives every part that sheds load the level.
func (g *Governor) apply(l Level) {
	for _, p := range g.opts.Parts() {
		if s, ok := p.(Shedder); ok {
			s.SetShedLevel(l)
		}
	}
}

// costs sums the programs' statistics over every part that runs them.
func (g *Governor) costs() (map[string]ProgramCost, bool) {
	out := map[string]ProgramCost{}
	any := false
	for _, p := range g.opts.Parts() {
		k, ok := p.(KernelCoster)
		if !ok {
			continue
		}
		cs, err := k.ProgramCosts()
		if err != nil {
			g.log.Debug("overhead: cannot read eBPF program statistics", "err", err)
			continue
		}
		for _, c := range cs {
			any = true
			o := out[c.Name]
			o.Name = c.Name
			o.RunTime += c.RunTime
			o.RunCount += c.RunCount
			out[c.Name] = o
		}
	}
	return out, any
}

// kernelWindow enables the BPF statistics for window and returns the
// programs' CPU seconds per second over it; known is false when they
// could not be measured, ok false when ctx ended. When the statistics
// cannot be enabled (no CAP_SYS_ADMIN) they may still be on (enabled
// before the capability was dropped, collectors.ebpf.bpf_stats): the
// window is measured anyway, and counts only if the run counts grew.
func (g *Governor) kernelWindow(ctx context.Context, window time.Duration) (total float64, known, ok bool) {
	if _, any := g.costs(); !any {
		g.m.statsAvailable.Set(0)
		g.m.kernelTotal.Set(0)
		g.m.kernelCPU.Reset()
		return 0, false, sleep(ctx, window)
	}
	st, err := g.opts.EnableStats()
	before, _ := g.costs()
	start := time.Now()
	ok = sleep(ctx, window)
	after, _ := g.costs()
	elapsed := time.Since(start)
	if err == nil {
		_ = st.Close()
	}
	if !ok {
		return 0, false, false
	}
	rates := map[string]float64{}
	counted := false
	for name, a := range after {
		b, seen := before[name]
		if !seen || a.RunTime < b.RunTime || a.RunCount < b.RunCount {
			continue // loaded during the window
		}
		counted = counted || a.RunCount > b.RunCount
		r := float64(a.RunTime-b.RunTime) / float64(elapsed)
		rates[name] = r
		total += r
	}
	if err != nil && !counted {
		if msg := err.Error(); msg != g.statsErr {
			g.statsErr = msg
			g.log.Warn("overhead: cannot enable BPF run-time statistics; the kernel budget is not applied", "reason", err)
		}
		g.m.statsAvailable.Set(0)
		g.m.kernelTotal.Set(0)
		g.m.kernelCPU.Reset()
		return 0, false, true
	}
	g.m.kernelCPU.Reset()
	for name, r := range rates {
		g.m.kernelCPU.WithLabelValues(name).Set(r)
	}
	g.m.kernelTotal.Set(total)
	g.m.statsAvailable.Set(1)
	return total, true, true
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
