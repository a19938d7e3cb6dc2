package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// Backtesting replays stored telemetry through rule files: each alerting
// rule's expression is evaluated over a time range at the group's
// interval (as the rule manager would have), and `for:` is applied to the
// results, giving the alerts that would have fired and when.

// RangeSeries is one series of a range query's result.
type RangeSeries struct {
	Labels map[string]string
	// Times and Values are the samples, in time order.
	Times  []time.Time
	Values []float64
}

// RangeQuerier evaluates a PromQL expression over [start, end] every step.
type RangeQuerier interface {
	QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]RangeSeries, error)
}

// PrometheusRange queries a Prometheus server (or anything serving its
// HTTP API) at url.
func PrometheusRange(url string) (RangeQuerier, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, err
	}
	return promRange{v1.NewAPI(c)}, nil
}

type promRange struct{ api v1.API }

func (p promRange) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]RangeSeries, error) {
	v, _, _, err := p.api.QueryRange(ctx, expr, v1.Range{Start: start, End: end, Step: step})
	if err != nil {
		return nil, err
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("range query returned %s, want a matrix", v.Type())
	}
	out := make([]RangeSeries, 0, len(m))
	for _, s := range m {
		rs := RangeSeries{Labels: map[string]string{}}
		for k, v := range s.Metric {
			rs.Labels[string(k)] = string(v)
		}
		for _, p := range s.Values {
			rs.Times = append(rs.Times, p.Timestamp.Time())
			rs.Values = append(rs.Values, float64(p.Value))
		}
		out = append(out, rs)
	}
	return out, nil
}

// TSDBRange opens the TSDB in dir read-only (a Prometheus or Vigil
// storage directory) and evaluates with Prometheus's engine. Close it when
// done.
func TSDBRange(dir string, logger *slog.Logger) (*LocalRange, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := tsdb.OpenDBReadOnly(dir, "", logger)
	if err != nil {
		return nil, fmt.Errorf("open TSDB %s: %w", dir, err)
	}
	eng := promql.NewEngine(promql.EngineOpts{Logger: logger, MaxSamples: 50_000_000, Timeout: 10 * time.Minute,
		LookbackDelta: 5 * time.Minute, Parser: Parser})
	return &LocalRange{db: db, engine: eng}, nil
}

// LocalRange is a RangeQuerier over a TSDB directory.
type LocalRange struct {
	db     *tsdb.DBReadOnly
	engine *promql.Engine
	// q is the one querier every query reads: a read-only TSDB copies its
	// head into a sandbox for each querier, once.
	q storage.Querier
}

// Close closes the TSDB.
func (l *LocalRange) Close() error {
	if l.q != nil {
		l.q.Close()
	}
	return l.db.Close()
}

// Querier implements storage.Queryable with the one querier, opened on
// first use over everything (the engine narrows each query by time).
func (l *LocalRange) Querier(_, _ int64) (storage.Querier, error) {
	if l.q == nil {
		q, err := l.db.Querier(math.MinInt64, math.MaxInt64)
		if err != nil {
			return nil, err
		}
		l.q = q
	}
	return noClose{l.q}, nil
}

type noClose struct{ storage.Querier }

func (noClose) Close() error { return nil }

// QueryRange implements RangeQuerier.
func (l *LocalRange) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]RangeSeries, error) {
	q, err := l.engine.NewRangeQuery(ctx, l, nil, expr, start, end, step)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, err
	}
	out := make([]RangeSeries, 0, len(m))
	for _, s := range m {
		rs := RangeSeries{Labels: s.Metric.Map()}
		for _, p := range s.Floats {
			rs.Times = append(rs.Times, time.UnixMilli(p.T))
			rs.Values = append(rs.Values, p.F)
		}
		out = append(out, rs)
	}
	return out, nil
}

// BacktestRules evaluates every alerting rule of rs over [from, to] at
// its group's interval (defaultInterval for groups without one; step
// instead when not zero; coarser when the range would need more than
// 10,000 evaluations, Prometheus's bound on a range query) through q, and
// returns the
// alerts that would have fired: StartsAt when the expression had held for
// the rule's `for:`, EndsAt when it stopped holding (zero if it still held
// at the end). Recording rules are not evaluated on their own: where an
// alerting rule reads a recorded series, the recording rule's expression
// is put in its place, so stored raw series are enough. Every problem is
// returned with its file, group and rule; the other rules still run.
func BacktestRules(ctx context.Context, rs *RuleSet, q RangeQuerier, from, to time.Time, step, defaultInterval time.Duration) ([]Alert, error) {
	records := map[string]parser.Expr{}
	for _, f := range rs.Files {
		for _, g := range rs.Groups[f].Groups {
			for _, r := range g.Rules {
				if r.Record == "" {
					continue
				}
				if e, err := Parser.ParseExpr(r.Expr); err == nil {
					records[r.Record] = e
				}
			}
		}
	}
	var out []Alert
	var errs []error
	for _, f := range rs.Files {
		for _, g := range rs.Groups[f].Groups {
			interval := time.Duration(g.Interval)
			if step > 0 {
				interval = step
			}
			if interval <= 0 {
				interval = defaultInterval
			}
			if interval <= 0 {
				interval = time.Minute
			}
			if minStep := to.Sub(from) / 10000; interval < minStep {
				interval = minStep.Truncate(time.Second) + time.Second
			}
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				where := fmt.Sprintf("%s: group %q, rule %q", f, g.Name, r.Alert)
				expr, err := inlineRecords(r.Expr, records)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
					continue
				}
				series, err := q.QueryRange(ctx, expr, from, to, interval)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
					continue
				}
				for _, s := range series {
					out = append(out, firingSpans(r.Alert, r.Labels, r.Annotations, time.Duration(r.For), interval, s)...)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartsAt.Before(out[j].StartsAt) })
	return out, errors.Join(errs...)
}

// firingSpans applies `for:` to one series of a rule's results: each run
// of consecutive evaluations (no gap longer than one interval) that lasts
// at least forDur is one alert.
func firingSpans(name string, ruleLabels, ann map[string]string, forDur, interval time.Duration, s RangeSeries) []Alert {
	ls := map[string]string{}
	for k, v := range s.Labels {
		if k != model.MetricNameLabel {
			ls[k] = v
		}
	}
	for k, v := range ruleLabels {
		ls[k] = v
	}
	ls[labels.AlertName] = name
	var out []Alert
	var active, last time.Time
	var firing *Alert
	end := func(at time.Time) {
		if firing != nil {
			firing.EndsAt = at
			out = append(out, *firing)
			firing = nil
		}
		active = time.Time{}
	}
	for i, t := range s.Times {
		if math.IsNaN(s.Values[i]) {
			continue
		}
		if !active.IsZero() && t.Sub(last) > interval+interval/2 {
			end(last.Add(interval))
		}
		if active.IsZero() {
			active = t
		}
		last = t
		if firing == nil && t.Sub(active) >= forDur {
			a := Alert{Labels: cloneMap(ls), Annotations: map[string]string{}, State: StateFiring, Source: SourceRule, StartsAt: t}
			for k, v := range ann {
				a.Annotations[k] = v
			}
			a.Annotations["backtest_active_since"] = active.UTC().Format(time.RFC3339)
			a.Annotations["backtest_value"] = fmt.Sprintf("%g", s.Values[i])
			a.Fingerprint = Fingerprint(a.Labels)
			firing = &a
		}
	}
	if firing != nil {
		out = append(out, *firing) // still firing at the end of the range
	}
	return out
}

// inlineRecords returns expr with every selector of a recorded series (a
// name some recording rule records, with no other matcher) replaced by
// the recording rule's expression.
func inlineRecords(expr string, records map[string]parser.Expr) (string, error) {
	e, err := Parser.ParseExpr(expr)
	if err != nil {
		return "", err
	}
	var problem error
	for range 8 { // recording rules reading recorded series, a few levels deep
		changed := false
		var walk func(n parser.Node) parser.Node
		walk = func(n parser.Node) parser.Node {
			switch x := n.(type) {
			case *parser.VectorSelector:
				rec, ok := records[x.Name]
				if !ok {
					return n
				}
				for _, m := range x.LabelMatchers {
					if m.Name != model.MetricNameLabel {
						problem = fmt.Errorf("cannot replay %s: it selects the recorded series %s with matchers; write it with the recording rule's expression", strings.TrimSpace(expr), x.Name)
						return n
					}
				}
				if x.OriginalOffset != 0 || x.Timestamp != nil || x.StartOrEnd != 0 {
					problem = fmt.Errorf("cannot replay the recorded series %s with an offset or @", x.Name)
					return n
				}
				changed = true
				sub, _ := Parser.ParseExpr(rec.String())
				return &parser.ParenExpr{Expr: sub}
			case *parser.MatrixSelector:
				if vs, ok := x.VectorSelector.(*parser.VectorSelector); ok {
					if _, rec := records[vs.Name]; rec {
						problem = fmt.Errorf("cannot replay a range over the recorded series %s", vs.Name)
					}
				}
				return n
			}
			for i, c := range parser.Children(n) {
				if r := walk(c); r != c {
					setChild(n, i, r)
				}
			}
			return n
		}
		e = walk(e).(parser.Expr)
		if problem != nil {
			return "", problem
		}
		if !changed {
			return e.String(), nil
		}
	}
	return "", errors.New("recording rules nest more than 8 levels deep")
}

// setChild replaces the i-th child (in parser.Children order) of n.
func setChild(n parser.Node, i int, c parser.Node) {
	e, _ := c.(parser.Expr)
	switch x := n.(type) {
	case *parser.AggregateExpr:
		kids := []*parser.Expr{}
		if x.Expr != nil {
			kids = append(kids, &x.Expr)
		}
		if x.Param != nil {
			kids = append(kids, &x.Param)
		}
		*kids[i] = e
	case *parser.BinaryExpr:
		if i == 0 {
			x.LHS = e
		} else {
			x.RHS = e
		}
	case *parser.Call:
		x.Args[i] = e
	case *parser.ParenExpr:
		x.Expr = e
	case *parser.UnaryExpr:
		x.Expr = e
	case *parser.SubqueryExpr:
		x.Expr = e
	case *parser.StepInvariantExpr:
		x.Expr = e
	case *parser.EvalStmt:
		x.Expr = e
	case parser.Expressions:
		x[i] = e
	}
}
