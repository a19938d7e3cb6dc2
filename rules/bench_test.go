package rules

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"google.golang.org/protobuf/proto"
)

// The benchmark scenario of issue 7: 1,000 rules over 50,000 series.
const (
	benchFamilies  = 50   // metric families bench_m0 … bench_m49
	benchPerFamily = 1000 // series per family: 10 jobs × 100 instances
	benchRules     = 1000
)

// benchGatherer returns 50,000 gauge series whose values change every
// gather, without the cost of a client_golang registry in the way.
type benchGatherer struct {
	mfs   []*dto.MetricFamily
	cycle int
}

func newBenchGatherer() *benchGatherer {
	g := &benchGatherer{}
	for f := 0; f < benchFamilies; f++ {
		mf := &dto.MetricFamily{Name: proto.String(fmt.Sprintf("bench_m%d", f)), Type: dto.MetricType_GAUGE.Enum()}
		for s := 0; s < benchPerFamily; s++ {
			mf.Metric = append(mf.Metric, &dto.Metric{
				Label: []*dto.LabelPair{
					{Name: proto.String("instance"), Value: proto.String(fmt.Sprintf("i%d", s%100))},
					{Name: proto.String("job"), Value: proto.String(fmt.Sprintf("j%d", s/100))},
				},
				Gauge: &dto.Gauge{Value: proto.Float64(0)},
			})
		}
		g.mfs = append(g.mfs, mf)
	}
	return g
}

func (g *benchGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.cycle++
	for f, mf := range g.mfs {
		for s, m := range mf.Metric {
			*m.Gauge.Value = float64((g.cycle*7+f*13+s)%100) / 100
		}
	}
	return g.mfs, nil
}

// benchRuleFile writes 1,000 rules in 20 groups of 50. Each rule selects
// one job of one metric family (100 series), so every series is read by two
// rules per cycle: 500 alerting rules on the current value (with `for`,
// labels and a templated annotation) and 500 recording rules aggregating a
// 1m rate or avg_over_time by job.
func benchRuleFile(b *testing.B) string {
	var sb strings.Builder
	sb.WriteString("groups:\n")
	n := 0
	for n < benchRules {
		fmt.Fprintf(&sb, "  - name: bench-%d\n    rules:\n", n/50)
		for i := 0; i < 50; i++ {
			f := n % benchFamilies
			k := n / benchFamilies // 0..19
			job := k % 10
			switch {
			case k < 10:
				fmt.Fprintf(&sb, "      - alert: BenchHigh%d\n        expr: bench_m%d{job=\"j%d\"} > 0.98\n        for: 1m\n        labels: {severity: warning}\n        annotations: {summary: '{{ $labels.instance }} is {{ $value }}'}\n", n, f, job)
			default:
				fn := "rate"
				if f%2 == 0 {
					fn = "avg_over_time"
				}
				fmt.Fprintf(&sb, "      - record: job:bench_m%d:%s\n        expr: sum by (job) (%s(bench_m%d{job=\"j%d\"}[1m]))\n", f, fn, fn, f, job)
			}
			n++
		}
	}
	p := filepath.Join(b.TempDir(), "bench.rules.yml")
	if err := os.WriteFile(p, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchStorage fills a local TSDB with cycles ingests of the 50,000 series,
// 5 s apart, ending at the returned time.
func benchStorage(b *testing.B, cycles int) (*LocalStorage, time.Time) {
	s, err := NewLocalStorage(StorageOptions{Retention: 20 * time.Minute, MaxSeries: 200000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	g := newBenchGatherer()
	ts := time.Now().Add(-time.Duration(cycles) * 5 * time.Second)
	for i := 1; i <= cycles; i++ {
		ts = ts.Add(5 * time.Second)
		if err := s.Ingest(g, ts, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
	return s, ts
}

// BenchmarkRuleEvaluationCycle measures one evaluation cycle of 1,000
// rules over 50,000 series (2 minutes of 5 s samples), with the 20 groups
// evaluated concurrently as the rule manager runs them. Goal: ≤ 200 ms.
func BenchmarkRuleEvaluationCycle(b *testing.B) {
	st, ts := benchStorage(b, 24)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, Parser: Parser})
	defer eng.Close()
	mgr := promrules.NewManager(&promrules.ManagerOptions{
		QueryFunc:    promrules.EngineQueryFunc(eng, st),
		NotifyFunc:   func(context.Context, string, ...*promrules.Alert) {},
		Context:      context.Background(),
		AppendableV2: st,
		Queryable:    st,
		Logger:       slog.New(slog.DiscardHandler),
		GroupLoader:  groupLoader{},
		Parser:       Parser,
	})
	groups, errs := mgr.LoadGroups(5*time.Second, labels.EmptyLabels(), "", nil, false, benchRuleFile(b))
	if errs != nil {
		b.Fatal(errs)
	}
	nrules := 0
	for _, g := range groups {
		nrules += len(g.Rules())
	}
	if nrules != benchRules || st.Head().NumSeries() != benchFamilies*benchPerFamily {
		b.Fatalf("%d rules over %d series", nrules, st.Head().NumSeries())
	}
	g := newBenchGatherer()
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each cycle sees fresh samples, as in the agent.
		b.StopTimer()
		ts = ts.Add(5 * time.Second)
		if err := st.Ingest(g, ts, uint64(1000+i)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu0 := cpuTime()
		var wg sync.WaitGroup
		for _, grp := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				grp.Eval(context.Background(), ts)
			}()
		}
		wg.Wait()
		cpu += cpuTime() - cpu0
	}
	b.StopTimer()
	for _, grp := range groups {
		for _, r := range grp.Rules() {
			if r.LastError() != nil {
				b.Fatalf("rule %s: %v", r.Name(), r.LastError())
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/cycle")
	// CPU time is what the goal means on a shared, loaded machine: wall
	// time there includes waiting for a core.
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/cycle")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngest50kSeries measures one ingest cycle: gather and append
// 50,000 series to the local TSDB.
func BenchmarkIngest50kSeries(b *testing.B) {
	st, ts := benchStorage(b, 2)
	g := newBenchGatherer()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts = ts.Add(5 * time.Second)
		if err := st.Ingest(g, ts, uint64(10+i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTSDBMemory50kSeries fills the local TSDB with the default
// retention (20 minutes of 5 s samples: 240 per series) of 50,000 series
// and reports the Go heap it holds and the memory-mapped chunk files.
func BenchmarkTSDBMemory50kSeries(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, _ := benchStorage(b, 240)
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		var mmapped int64
		filepath.Walk(st.dir, func(_ string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				mmapped += fi.Size()
			}
			return nil
		})
		b.ReportMetric(heap/(1<<20), "heap-MiB")
		b.ReportMetric(heap/float64(st.Head().NumSeries()), "heap-B/series")
		b.ReportMetric(float64(mmapped)/(1<<20), "mmap-MiB")
		runtime.KeepAlive(st)
		st.Close()
	}
}
