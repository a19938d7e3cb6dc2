package rules

import (
	"context"
	"io/fs"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"

	"github.com/vigil-agent/vigil/internal/testenv"
	"github.com/vigil-agent/vigil/rules/defaults"
)

// Whenever emptyWhen says an expression is empty, PromQL's engine returns
// an empty vector for it over the same TSDB; and the expressions that make
// samples from nothing are never answered without the engine.
func TestEmptyWhenAgreesWithTheEngine(t *testing.T) {
	reg := prometheus.NewRegistry()
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "up", Help: "h"}, []string{"job"})
	up.WithLabelValues("a").Set(1)
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "req_total", Help: "h"}, []string{"job"})
	req.WithLabelValues("a").Add(5)
	reg.MustRegister(up, req)
	s := newTestStorage(t, 10*time.Minute, 1000)
	now := time.Now()
	for i := range 3 {
		req.WithLabelValues("a").Add(1)
		if err := s.Ingest(reg, now.Add(time.Duration(i-2)*5*time.Second), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		expr string
		// skip: answered without the engine over this TSDB (up and
		// req_total have series, missing_total and other do not).
		skip bool
	}{
		{"missing_total", true},
		{`missing_total{job="a"}`, true},
		{"rate(missing_total[1m])", true},
		{"sum by (job) (rate(missing_total[1m])) > 0.1", true},
		{"histogram_quantile(0.9, sum by (le) (rate(missing_bucket[1m]))) > 1", true},
		{"up / missing_total", true},
		{"missing_total / up", true},
		{"up and missing_total", true},
		{"missing_total and up", true},
		{"missing_total unless up", true},
		{"missing_total or other", true},
		{"-missing_total", true},
		{"max_over_time(missing_total[5m:10s])", true},
		{"label_replace(missing_total, \"a\", \"$1\", \"job\", \"(.*)\")", true},
		{"topk(3, missing_total)", true},
		{"count_values(\"v\", missing_total)", true},
		{"2 * missing_total > bool 1", true},
		{"predict_linear(missing_total[10m], 3600) < 0", true},
		// Present inputs go to the engine.
		{"up", false},
		{"up or missing_total", false},
		{"up unless missing_total", false},
		{"rate(req_total[1m])", false},
		// Samples from nothing.
		{"absent(missing_total)", false},
		{"absent_over_time(missing_total[5m])", false},
		{"vector(1)", false},
		{"missing_total or vector(0)", false},
		{"sum(missing_total) or vector(0)", false},
		{"scalar(missing_total)", false},
		{"time()", false},
		{"day_of_week()", false},
		{"1", false},
		{"vector(pi()) > 3", false},
		{"missing_total > bool scalar(up)", true},
		// No fixed name.
		{`{__name__=~"missing.*"}`, false},
		{`{job="a"}`, false},
	} {
		e, err := Parser.ParseExpr(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		cond := emptyWhen(e)
		skip := cond != nil && cond(s.hasSeries)
		if skip != tc.skip {
			t.Errorf("%s: answered without the engine = %v, want %v", tc.expr, skip, tc.skip)
		}
		if got := instant(t, s, tc.expr, now); skip && len(got) > 0 {
			t.Errorf("%s: answered empty without the engine, the engine returns %v", tc.expr, got)
		}
	}
}

// Every default rule reads a metric name: with none of them present (a
// node with no traffic, no logs, no cgroups) each is answered without the
// engine, and the engine agrees it is empty.
func TestDefaultRulesWithoutInput(t *testing.T) {
	s := newTestStorage(t, 10*time.Minute, 1000)
	files, err := fs.Glob(defaults.FS, "*.rules.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("default rule files: %v %v", files, err)
	}
	n := 0
	for _, f := range files {
		b, err := fs.ReadFile(defaults.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, Parser, slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				e, err := Parser.ParseExpr(r.Expr)
				if err != nil {
					t.Fatal(err)
				}
				name := r.Alert + r.Record
				cond := emptyWhen(e)
				if cond == nil || !cond(s.hasSeries) {
					t.Errorf("%s (%s): goes to the engine with no input", name, f)
				}
				if got := instant(t, s, r.Expr, time.Now()); len(got) > 0 {
					t.Errorf("%s: the engine returns %v with no input", name, got)
				}
				n++
			}
		}
	}
	if n < 40 {
		t.Errorf("%d default rules, want the whole set", n)
	}
}

// A recording rule over a metric that is not there yet is answered
// without the engine (counted), and records as soon as its metric appears.
func TestRuleWithoutInputRecordsOnceItsMetricAppears(t *testing.T) {
	dir := t.TempDir()
	cfg := NewConfig()
	cfg.EvaluationInterval = 100 * time.Millisecond
	cfg.RuleFiles = []string{writeFile(t, dir, "rules.yml", `
groups:
  - name: g
    rules:
      - record: job:late:sum
        expr: sum by (job) (late_total)
`)}
	te := startEngine(t, cfg)
	without := func() float64 { return testutil.ToFloat64(te.noInputQueries) }
	testenv.EventuallyTrue(t, 10*time.Second, "queries answered without input", func() bool { return without() >= 3 })
	late := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "late_total", Help: "h"}, []string{"job"})
	late.WithLabelValues("a").Add(2)
	te.reg.MustRegister(late)
	testenv.EventuallyTrue(t, 10*time.Second, "job:late:sum recorded", func() bool {
		r := te.query(t, "job:late:sum").Data.Result
		return len(r) == 1 && r[0].Value[1] == "2"
	})
	before := without()
	time.Sleep(500 * time.Millisecond)
	if after := without(); after != before {
		t.Errorf("queries answered without input went on after late_total appeared: %v then %v", before, after)
	}
}

// BenchmarkQueryWithoutInput is one default alerting rule's query on a
// node without its metric (VigilWorkloadRedisSlow without Redis traffic):
// PromQL's engine against the check of noinput.go, side by side.
func BenchmarkQueryWithoutInput(b *testing.B) {
	s, err := NewLocalStorage(StorageOptions{Retention: 10 * time.Minute, MaxSeries: 1000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	const q = `histogram_quantile(0.9, vigil:workload_redis_client_request_duration_seconds_bucket:rate1m) > 0.1 and on (namespace, pod, container, unit) vigil:workload_redis_client_request_duration_seconds_bucket:rate1m{le="+Inf"} > 0.2`
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, Parser: Parser})
	b.Cleanup(func() { eng.Close() })
	ctx := context.Background()
	now := time.Now()
	b.Run("engine", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, err := promrules.EngineQueryFunc(eng, s)(ctx, q, now)
			if err != nil || len(v) > 0 {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("noinput", func(b *testing.B) {
		b.ReportAllocs()
		var c noInputCache
		for b.Loop() {
			if ni := c.get(q); ni.empty == nil || !ni.empty(s.hasSeries) {
				b.Fatal("goes to the engine")
			}
		}
	})
}
