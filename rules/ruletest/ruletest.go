// Package ruletest runs promtool-style rule unit test files (rule_files,
// evaluation_interval, group_eval_order, tests with input_series,
// alert_rule_test and promql_expr_test) with the same semantics as
// `promtool test rules`, on top of Prometheus's promqltest lazy loader and
// rule manager. Rule files may also be PrometheusRule objects or embedded
// files ("embedded:…"), as everywhere in Vigil.
package ruletest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	promrules "github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/internal/confyaml"
	"github.com/vigil-agent/vigil/rules"
	"github.com/vigil-agent/vigil/rules/defaults"
)

// Options tune a run.
type Options struct {
	// Run, when not empty, selects test groups whose name matches any of
	// these regular expressions.
	Run []string
}

// Run runs every test file, writing progress to out and failures to errOut
// in promtool's format, and reports whether all passed. File names may be
// "embedded:GLOB" to run the embedded default tests.
func Run(out, errOut io.Writer, opts Options, files ...string) bool {
	var run *regexp.Regexp
	if len(opts.Run) > 0 {
		var err error
		run, err = regexp.Compile(strings.Join(opts.Run, "|"))
		if err != nil {
			fmt.Fprintf(errOut, "invalid --run: %v\n", err)
			return false
		}
	}
	expanded, err := rules.ExpandRuleFiles(files)
	if err != nil {
		fmt.Fprintln(errOut, err)
		return false
	}
	ok := true
	for _, f := range expanded {
		fmt.Fprintf(out, "Processing test file: %s\n", f)
		if errs := RunFile(f, run, errOut); len(errs) > 0 {
			fmt.Fprintln(errOut, "  FAILED:")
			for _, e := range errs {
				fmt.Fprintln(errOut, e.Error())
				fmt.Fprintln(errOut)
			}
			ok = false
		} else {
			fmt.Fprintln(out, "  SUCCESS")
		}
		fmt.Fprintln(out)
	}
	return ok
}

// file is one unit test file.
type file struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	GroupEvalOrder     []string       `yaml:"group_eval_order"`
	Tests              []testGroup    `yaml:"tests"`
	FuzzyCompare       bool           `yaml:"fuzzy_compare"`
}

type testGroup struct {
	Interval        model.Duration    `yaml:"interval"`
	InputSeries     []inputSeries     `yaml:"input_series"`
	AlertRuleTests  []alertTest       `yaml:"alert_rule_test"`
	PromqlExprTests []exprTest        `yaml:"promql_expr_test"`
	ExternalLabels  map[string]string `yaml:"external_labels"`
	ExternalURL     string            `yaml:"external_url"`
	Name            string            `yaml:"name"`
	StartTimestamp  startTime         `yaml:"start_timestamp"`
}

type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTest struct {
	EvalTime  model.Duration  `yaml:"eval_time"`
	Alertname string          `yaml:"alertname"`
	ExpAlerts []expectedAlert `yaml:"exp_alerts"`
}

type expectedAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

type exprTest struct {
	Expr       string           `yaml:"expr"`
	EvalTime   model.Duration   `yaml:"eval_time"`
	ExpSamples []expectedSample `yaml:"exp_samples"`
}

type expectedSample struct {
	Labels    string  `yaml:"labels"`
	Value     float64 `yaml:"value"`
	Histogram string  `yaml:"histogram"`
}

// startTime accepts an RFC 3339 time or Unix seconds, as promtool does.
type startTime struct{ time.Time }

func (s *startTime) UnmarshalYAML(n *yaml.Node) error {
	if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
		sec, frac := math.Modf(f)
		s.Time = time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC()
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, n.Value)
	if err != nil {
		return fmt.Errorf("line %d: cannot parse %q as a timestamp (RFC 3339 or Unix seconds)", n.Line, n.Value)
	}
	s.Time = t
	return nil
}

func readFile(name string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(name, rules.EmbeddedPrefix); ok {
		return fs.ReadFile(defaults.FS, rest)
	}
	return os.ReadFile(name)
}

// resolveRuleFiles makes rule_files relative to the test file's directory
// and expands globs; within the embedded set, paths stay embedded.
func resolveRuleFiles(testFile string, patterns []string, warn io.Writer) ([]string, error) {
	var out []string
	for _, p := range patterns {
		var full string
		switch {
		case strings.HasPrefix(p, rules.EmbeddedPrefix):
			full = p
		case strings.HasPrefix(testFile, rules.EmbeddedPrefix):
			full = rules.EmbeddedPrefix + path.Join(path.Dir(strings.TrimPrefix(testFile, rules.EmbeddedPrefix)), p)
		case p != "" && !filepath.IsAbs(p):
			full = filepath.Join(filepath.Dir(testFile), p)
		default:
			full = p
		}
		m, err := rules.ExpandRuleFiles([]string{full})
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			fmt.Fprintln(warn, "  WARNING: no file match pattern", full)
		}
		out = append(out, m...)
	}
	return out, nil
}

// RunFile runs one unit test file and returns its failures. Test groups
// whose name does not match run (when not nil) are skipped.
func RunFile(name string, run *regexp.Regexp, warn io.Writer) []error {
	data, err := readFile(name)
	if err != nil {
		return []error{err}
	}
	// Aliases could multiply the series (and their samples) before any
	// bound below is checked: refuse a document they expand too much.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err == nil {
		if err := confyaml.CheckAliases(name, &doc, confyaml.MaxAliasNodes); err != nil {
			return []error{err}
		}
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		var ce *confyaml.Error
		if errors.As(err, &ce) && ce.File == "" {
			ce.File = name
			return []error{ce}
		}
		return []error{fmt.Errorf("%s: %w", name, err)}
	}
	f.RuleFiles, err = resolveRuleFiles(name, f.RuleFiles, warn)
	if err != nil {
		return []error{err}
	}
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	order := map[string]int{}
	for i, g := range f.GroupEvalOrder {
		if _, dup := order[g]; dup {
			return []error{fmt.Errorf("group name repeated in evaluation order: %s", g)}
		}
		order[g] = i
	}
	var errs []error
	for i, tg := range f.Tests {
		if run != nil && !run.MatchString(tg.Name) {
			continue
		}
		if tg.Interval == 0 {
			tg.Interval = f.EvaluationInterval
		}
		if err := checkEvalSteps(time.Duration(f.EvaluationInterval), tg.maxEvalTime()); err != nil {
			errs = append(errs, fmt.Errorf("%s: tests[%d] %q: %w", name, i, tg.Name, err))
			continue
		}
		errs = append(errs, tg.run(time.Duration(f.EvaluationInterval), order, f.FuzzyCompare, f.RuleFiles)...)
	}
	return errs
}

// loadString renders the input series as a promqltest "load" block.
func (tg *testGroup) loadString() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load %s\n", tg.Interval)
	for _, s := range tg.InputSeries {
		fmt.Fprintf(&b, "  %s %s\n", s.Series, s.Values)
	}
	return b.String()
}

func (tg *testGroup) maxEvalTime() time.Duration {
	var m model.Duration
	for _, a := range tg.AlertRuleTests {
		m = max(m, a.EvalTime)
	}
	for _, e := range tg.PromqlExprTests {
		m = max(m, e.EvalTime)
	}
	return time.Duration(m)
}

// got is one alert as the tests compare it: labels and annotations.
type got struct {
	Labels, Annotations labels.Labels
}

func (g got) String() string {
	return "Labels:" + g.Labels.String() + "\nAnnotations:" + g.Annotations.String()
}

func sortGot(gs []got) {
	sort.Slice(gs, func(i, j int) bool {
		if c := labels.Compare(gs[i].Labels, gs[j].Labels); c != 0 {
			return c < 0
		}
		return labels.Compare(gs[i].Annotations, gs[j].Annotations) < 0
	})
}

func gotString(gs []got, indent string) string {
	if len(gs) == 0 {
		return "[]"
	}
	var b strings.Builder
	b.WriteString("[")
	for i, g := range gs {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n%d:", i)
		b.WriteString(strings.ReplaceAll("\n"+g.String(), "\n", "\n  "))
	}
	b.WriteString("\n]")
	return strings.ReplaceAll(b.String(), "\n", "\n"+indent)
}

func (tg *testGroup) run(evalInterval time.Duration, order map[string]int, fuzzy bool, ruleFiles []string) (errs []error) {
	suite, err := promqltest.NewLazyLoader(tg.loadString(), promqltest.LazyLoaderOpts{
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		StartTime:            tg.StartTimestamp.Time,
		Parser:               rules.Parser,
	})
	if err != nil {
		return []error{err}
	}
	defer func() {
		if err := suite.Close(); err != nil {
			errs = append(errs, err)
		}
	}()
	suite.SubqueryInterval = evalInterval

	mgr := promrules.NewManager(&promrules.ManagerOptions{
		QueryFunc:    promrules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
		AppendableV2: suite.Storage(),
		Context:      context.Background(),
		NotifyFunc:   func(context.Context, string, ...*promrules.Alert) {},
		Logger:       slog.New(slog.DiscardHandler),
		GroupLoader:  rules.GroupLoader(),
		Parser:       rules.Parser,
	})
	groupMap, lerrs := mgr.LoadGroups(time.Duration(tg.Interval), labels.FromMap(tg.ExternalLabels), tg.ExternalURL, nil, false, ruleFiles...)
	if lerrs != nil {
		return lerrs
	}
	groups := make([]*promrules.Group, 0, len(groupMap))
	for _, g := range groupMap {
		groups = append(groups, g)
	}
	// Groups named in group_eval_order go first in that order; the rest
	// keep no particular order (promtool's partial order).
	sort.SliceStable(groups, func(i, j int) bool { return order[groups[i].Name()] < order[groups[j].Name()] })
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*promrules.AlertingRule); ok {
				ar.SetRestored(true) // so ALERTS series are written from the first evaluation
			}
		}
	}

	mint := time.Unix(0, 0).UTC()
	if !tg.StartTimestamp.IsZero() {
		mint = tg.StartTimestamp.Time
	}
	maxt := mint.Add(tg.maxEvalTime())

	floatEq := func(a, b float64) bool {
		if a == b || (math.IsNaN(a) && math.IsNaN(b)) {
			return true
		}
		return fuzzy && (math.Nextafter(a, math.Inf(-1)) == b || math.Nextafter(a, math.Inf(1)) == b)
	}

	testName := ""
	if tg.Name != "" {
		testName = fmt.Sprintf("    name: %s,\n", tg.Name)
	}
	byTime := map[model.Duration][]alertTest{}
	var times []model.Duration
	for _, at := range tg.AlertRuleTests {
		if at.Alertname == "" {
			in := ""
			if tg.Name != "" {
				in = fmt.Sprintf(" (in TestGroup %s)", tg.Name)
			}
			return []error{fmt.Errorf("an item under alert_rule_test misses required attribute alertname at eval_time %v%s", at.EvalTime, in)}
		}
		if _, ok := byTime[at.EvalTime]; !ok {
			times = append(times, at.EvalTime)
		}
		byTime[at.EvalTime] = append(byTime[at.EvalTime], at)
	}
	slices.Sort(times)

	next := 0
	for ts := mint; !ts.After(maxt); ts = ts.Add(evalInterval) {
		var evalErrs []error
		suite.WithSamplesTill(ts, func(err error) {
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, g := range groups {
				g.Eval(suite.Context(), ts)
				for _, r := range g.Rules() {
					if r.LastError() != nil {
						evalErrs = append(evalErrs, fmt.Errorf("    rule: %s, time: %s, err: %w", r.Name(), ts.Sub(time.Unix(0, 0).UTC()), r.LastError()))
					}
				}
			}
		})
		errs = append(errs, evalErrs...)
		if len(evalErrs) > 0 {
			return errs
		}
		// Alert tests whose eval_time falls in [ts, ts+interval) are checked
		// against this evaluation.
		for next < len(times) && ts.Sub(mint) <= time.Duration(times[next]) && time.Duration(times[next]) < ts.Add(evalInterval).Sub(mint) {
			t := times[next]
			next++
			want := map[string]bool{}
			for _, at := range byTime[t] {
				want[at.Alertname] = true
			}
			firing := map[string][]got{}
			for _, g := range groups {
				for _, ar := range g.AlertingRules() {
					if !want[ar.Name()] {
						continue
					}
					for _, a := range ar.ActiveAlerts() {
						if a.State == promrules.StateFiring {
							firing[ar.Name()] = append(firing[ar.Name()], got{Labels: a.Labels.Copy(), Annotations: a.Annotations.Copy()})
						}
					}
				}
			}
			for _, at := range byTime[t] {
				var exp []got
				for _, e := range at.ExpAlerts {
					l := map[string]string{}
					for k, v := range e.ExpLabels {
						l[k] = v
					}
					l[labels.AlertName] = at.Alertname
					exp = append(exp, got{Labels: labels.FromMap(l), Annotations: labels.FromMap(e.ExpAnnotations)})
				}
				have := firing[at.Alertname]
				sortGot(exp)
				sortGot(have)
				if !slices.EqualFunc(exp, have, func(a, b got) bool {
					return labels.Equal(a.Labels, b.Labels) && labels.Equal(a.Annotations, b.Annotations)
				}) {
					errs = append(errs, fmt.Errorf("%s    alertname: %s, time: %s, \n        exp:%v, \n        got:%v",
						testName, at.Alertname, at.EvalTime, gotString(exp, "            "), gotString(have, "            ")))
				}
			}
		}
	}

exprs:
	for _, et := range tg.PromqlExprTests {
		vec, err := instantQuery(suite, et.Expr, mint.Add(time.Duration(et.EvalTime)))
		if err != nil {
			errs = append(errs, fmt.Errorf("    expr: %q, time: %s, err: %s", et.Expr, et.EvalTime, err))
			continue
		}
		var have, exp []sample
		for _, s := range vec {
			have = append(have, sample{Labels: s.Metric.Copy(), Value: s.F, Histogram: promqltest.HistogramTestExpression(s.H)})
		}
		for _, es := range et.ExpSamples {
			lb, err := rules.Parser.ParseMetric(es.Labels)
			var h *histogram.FloatHistogram
			if err == nil && es.Histogram != "" {
				_, vals, perr := rules.Parser.ParseSeriesDesc("{} " + es.Histogram)
				switch {
				case perr != nil:
					err = perr
				case len(vals) != 1:
					err = fmt.Errorf("expected 1 value, got %d", len(vals))
				case vals[0].Histogram == nil:
					err = fmt.Errorf("expected histogram, got %v", vals[0])
				default:
					h = vals[0].Histogram
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("    expr: %q, time: %s, err: %w", et.Expr, et.EvalTime, fmt.Errorf("labels %q: %w", es.Labels, err)))
				continue exprs
			}
			exp = append(exp, sample{Labels: lb, Value: es.Value, Histogram: promqltest.HistogramTestExpression(h)})
		}
		sortSamples(exp)
		sortSamples(have)
		if !slices.EqualFunc(exp, have, func(a, b sample) bool {
			return labels.Equal(a.Labels, b.Labels) && a.Histogram == b.Histogram && floatEq(a.Value, b.Value)
		}) {
			errs = append(errs, fmt.Errorf("    expr: %q, time: %s,\n        exp: %v\n        got: %v", et.Expr, et.EvalTime, samplesString(exp), samplesString(have)))
		}
	}
	return errs
}

type sample struct {
	Labels    labels.Labels
	Value     float64
	Histogram string
}

func (s sample) String() string {
	if s.Histogram != "" {
		return s.Labels.String() + " " + s.Histogram
	}
	return s.Labels.String() + " " + strconv.FormatFloat(s.Value, 'E', -1, 64)
}

func sortSamples(s []sample) {
	sort.Slice(s, func(i, j int) bool { return labels.Compare(s[i].Labels, s[j].Labels) <= 0 })
}

func samplesString(s []sample) string {
	if len(s) == 0 {
		return "nil"
	}
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = x.String()
	}
	return strings.Join(parts, ", ")
}

func instantQuery(suite *promqltest.LazyLoader, qs string, t time.Time) (promql.Vector, error) {
	if expr, err := rules.Parser.ParseExpr(qs); err == nil {
		if err := rules.CheckQuerySteps(expr, time.Second); err != nil {
			return nil, err
		}
	}
	q, err := suite.QueryEngine().NewInstantQuery(suite.Context(), suite.Queryable(), nil, qs, t)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(suite.Context())
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return v, nil
	case promql.Scalar:
		return promql.Vector{{T: v.T, F: v.V, Metric: labels.Labels{}}}, nil
	default:
		return nil, errors.New("rule result is not a vector or scalar")
	}
}
