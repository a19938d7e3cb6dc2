package rules

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/metricreg"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// The local TSDB stores the metric names it is told to (a histogram's
// _bucket, _sum and _count each by name), skips and counts the rest, and a
// series it stops storing goes stale.
// With the agent's registry (a NameGatherer) the families no rule reads
// are left out before they are read: the same samples are stored.
func TestIngestSelectedNames(t *testing.T) {
	t.Run("Gather", func(t *testing.T) { testIngestSelectedNames(t, prometheus.NewRegistry()) })
	t.Run("GatherNames", func(t *testing.T) { testIngestSelectedNames(t, metricreg.New()) })
}

func testIngestSelectedNames(t *testing.T, reg interface {
	prometheus.Gatherer
	MustRegister(...prometheus.Collector)
}) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "h"})
	c.Add(3)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "h"})
	g.Set(7)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "h", Buckets: []float64{1}})
	h.Observe(0.5)
	reg.MustRegister(c, g, h)
	s := newTestStorage(t, 10*time.Minute, 1000)
	now := time.Now()
	s.Select(Selection{"g": nil, "h_seconds_bucket": nil})
	if err := s.Ingest(reg, now, 1); err != nil {
		t.Fatal(err)
	}
	has := func(q string, at time.Time) bool { return len(instant(t, s, q, at)) > 0 }
	for q, want := range map[string]bool{"g": true, `h_seconds_bucket{le="1"}`: true, `h_seconds_bucket{le="+Inf"}`: true, "c_total": false, "h_seconds_sum": false, "h_seconds_count": false} {
		if got := has(q, now); got != want {
			t.Errorf("after selecting g and h_seconds_bucket: %s stored = %v, want %v", q, got, want)
		}
	}
	// c_total, h_seconds_sum and h_seconds_count: three samples skipped
	// (GatherNames: c_total's family unread, one metric).
	if got := testutil.ToFloat64(s.skipped); got != 3 {
		t.Errorf("skipped samples = %v, want 3", got)
	}

	// Everything (nil), then only c_total: g goes stale at once.
	s.Select(nil)
	t2 := now.Add(5 * time.Second)
	if err := s.Ingest(reg, t2, 2); err != nil {
		t.Fatal(err)
	}
	if !has("c_total", t2) {
		t.Error("with no selection c_total is not stored")
	}
	s.Select(Selection{"c_total": nil})
	t3 := t2.Add(5 * time.Second)
	if err := s.Ingest(reg, t3, 3); err != nil {
		t.Fatal(err)
	}
	if has("g", t3) {
		t.Error("g, no longer selected, is not stale")
	}
	if !has("c_total", t3) {
		t.Error("c_total, selected, is not stored")
	}
}

// A name selected with matchers stores the series that match one of its
// selectors, every matcher of it (a label absent or empty matches ""),
// skips and counts the others; a name also selected bare stores them all,
// and a series a new selection leaves out goes stale.
func TestIngestSelectedSeries(t *testing.T) {
	reg := metricreg.New()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "req_total", Help: "h"}, []string{"kind", "code"})
	for _, lv := range [][2]string{{"server", "200"}, {"server", "500"}, {"client", "200"}, {"client", "503"}, {"client", ""}} {
		req.WithLabelValues(lv[0], lv[1]).Add(1)
	}
	reg.MustRegister(req)
	s := newTestStorage(t, 10*time.Minute, 1000)
	now := time.Now()
	sel := func(exprs ...string) [][]*labels.Matcher {
		var sets [][]*labels.Matcher
		for _, e := range exprs {
			ms, err := Parser.ParseMetricSelector(e)
			if err != nil {
				t.Fatal(err)
			}
			sets = append(sets, ms)
		}
		return sets
	}
	count := func(q string, at time.Time) int { return len(instant(t, s, q, at)) }
	ingest := func(at time.Time, gen uint64) {
		t.Helper()
		if err := s.Ingest(reg, at, gen); err != nil {
			t.Fatal(err)
		}
	}

	s.Select(Selection{"req_total": sel(`{kind="server"}`, `{kind="client",code=~"5.."}`, `{code=""}`)})
	ingest(now, 1)
	for q, want := range map[string]int{
		`req_total`:                               1 + 1 + 1 + 1, // all but client 200
		`req_total{kind="server"}`:                2,
		`req_total{kind="client",code="503"}`:     1,
		`req_total{kind="client",code=""}`:        1,
		`req_total{kind="client",code="200"}`:     0,
		`req_total{kind="client",code!~"5..|^$"}`: 0,
	} {
		if got := count(q, now); got != want {
			t.Errorf("%s: %d series stored, want %d", q, got, want)
		}
	}
	if got := testutil.ToFloat64(s.skipped); got != 1 {
		t.Errorf("skipped samples = %v, want 1 (client 200)", got)
	}

	// The same name also selected bare: every series.
	s.Select(Selection{"req_total": nil})
	t2 := now.Add(5 * time.Second)
	ingest(t2, 2)
	if got := count(`req_total`, t2); got != 5 {
		t.Errorf("bare selection: %d series stored, want 5", got)
	}

	// Only the server side: the three client series go stale at once.
	s.Select(Selection{"req_total": sel(`{kind="server"}`)})
	t3 := t2.Add(5 * time.Second)
	ingest(t3, 3)
	if got := count(`req_total`, t3); got != 2 {
		t.Errorf("after selecting kind=server: %d series, want 2 (client series stale)", got)
	}
	if got := testutil.ToFloat64(s.skipped); got != 1+3 {
		t.Errorf("skipped samples = %v, want 4", got)
	}
}

// The engine stores the series its rules' selectors match: a name read
// only with matchers keeps only the series that match one of them.
func TestEngineStoresWhatItsSelectorsMatch(t *testing.T) {
	dir := t.TempDir()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "req_total", Help: "h"}, []string{"kind", "code"})
	for _, lv := range [][2]string{{"server", "200"}, {"server", "500"}, {"client", "200"}, {"client", "503"}} {
		req.WithLabelValues(lv[0], lv[1]).Add(1)
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g", Help: "h"}, []string{"kind"})
	g.WithLabelValues("server").Set(1)
	g.WithLabelValues("client").Set(1)
	cfg := NewConfig()
	cfg.EvaluationInterval = 100 * time.Millisecond
	cfg.RuleFiles = []string{writeFile(t, dir, "rules.yml", `
groups:
  - name: g
    rules:
      - record: x:req:rate1m
        expr: sum by (code) (rate(req_total{kind="server"}[1m]))
      - alert: ClientErrors
        expr: sum(rate(req_total{kind="client",code=~"5.."}[1m])) > 0
      - record: x:g
        expr: g{kind="server"} + on() group_left count(g)
`)}
	te := startEngine(t, cfg, req, g)
	count := func(q string) int { return len(te.query(t, q).Data.Result) }
	testenv.EventuallyTrue(t, 10*time.Second, "req_total stored", func() bool { return count("req_total") > 0 })
	for q, want := range map[string]int{
		`req_total{kind="server"}`:            2,
		`req_total{kind="client",code="503"}`: 1,
		`req_total{kind="client",code="200"}`: 0,
		`g`:                                   2, // also read bare
	} {
		if got := count(q); got != want {
			t.Errorf("%s: %d series stored, want %d", q, got, want)
		}
	}
}

// The engine stores what its loaded rules read — by name, through
// recording rules and range selectors — follows a reload, and stores
// everything with ingest_all or when a rule selects by a regular
// expression on the name.
func TestEngineStoresWhatItsRulesRead(t *testing.T) {
	dir := t.TempDir()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "h"})
	a.Inc()
	b := prometheus.NewGauge(prometheus.GaugeOpts{Name: "b", Help: "h"})
	b.Set(1)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "h", Buckets: []float64{1}})
	h.Observe(2)
	cfg := NewConfig()
	cfg.EvaluationInterval = 100 * time.Millisecond
	cfg.RuleFiles = []string{writeFile(t, dir, "rules.yml", `
groups:
  - name: g
    rules:
      - record: x:a:rate1m
        expr: sum(rate(a_total[1m]))
      - alert: SlowH
        expr: histogram_quantile(0.9, sum by (le) (rate(h_seconds_bucket[1m]))) > 1
`)}
	te := startEngine(t, cfg, a, b, h)
	stored := func(q string) bool { return len(te.query(t, q).Data.Result) > 0 }
	testenv.EventuallyTrue(t, 10*time.Second, "a_total stored", func() bool { return stored("a_total") })
	for q, want := range map[string]bool{"a_total": true, "h_seconds_bucket": true, "b": false, "h_seconds_count": false} {
		if got := stored(q); got != want {
			t.Errorf("%s stored = %v, want %v", q, got, want)
		}
	}
	skipped := func() float64 {
		mfs, err := te.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "vigil_rules_tsdb_samples_skipped_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	if skipped() == 0 {
		t.Error("vigil_rules_tsdb_samples_skipped_total is 0 with b and h_seconds_sum not stored")
	}

	apply := func(c *Config) {
		t.Helper()
		if err := te.ApplyConfig(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	// ingest_all: b is stored from the next ingest on.
	all := *cfg
	all.IngestAll = true
	apply(&all)
	testenv.EventuallyTrue(t, 10*time.Second, "b stored with ingest_all", func() bool { return stored("b") })

	// A rule reading b only: a_total goes stale, b is stored.
	only := *cfg
	only.RuleFiles = []string{writeFile(t, dir, "b.yml", "groups:\n  - name: b\n    rules:\n      - record: x:b\n        expr: b * 2\n")}
	apply(&only)
	testenv.EventuallyTrue(t, 10*time.Second, "a_total stale after the rules stopped reading it", func() bool { return !stored("a_total") })
	if !stored("b") {
		t.Error("b, read by the new rule, is not stored")
	}

	// An annotation that runs a query of its own: everything is stored
	// (the query may read any name).
	tq := *cfg
	tq.RuleFiles = []string{writeFile(t, dir, "tq.yml", "groups:\n  - name: tq\n    rules:\n      - alert: A\n        expr: a_total > 0\n        annotations:\n          description: '{{ with query \"b\" }}{{ . | first | value }}{{ end }}'\n")}
	apply(&tq)
	testenv.EventuallyTrue(t, 10*time.Second, "h_seconds_count stored with a query in a template", func() bool { return stored("h_seconds_count") })

	// Back to rules that read b only: h_seconds_count goes stale.
	apply(&only)
	testenv.EventuallyTrue(t, 10*time.Second, "h_seconds_count stale again", func() bool { return !stored("h_seconds_count") })

	// A selector without a fixed name: everything is stored.
	re := *cfg
	re.RuleFiles = []string{writeFile(t, dir, "re.yml", "groups:\n  - name: re\n    rules:\n      - record: x:any\n        expr: count({__name__=~\"a_.*\"})\n")}
	apply(&re)
	before := skipped()
	testenv.EventuallyTrue(t, 10*time.Second, "h_seconds_count stored with a name regex", func() bool { return stored("h_seconds_count") })
	time.Sleep(3 * cfg.EvaluationInterval) // ingests that would skip if they did
	if got := skipped(); got != before {
		t.Errorf("with a rule selecting by a name regex, %v more samples were skipped", got-before)
	}
}

// The default rule set (the embedded rules the agent loads unless told
// otherwise) makes the local TSDB store the Redis, PostgreSQL and DNS
// metrics its dependency rules read, with the eBPF collector's names and
// labels, and its recording rules turn them into the vigil:* series the
// alerts use; a histogram's _count, which no rule reads, is not stored.
func TestDefaultRulesStoreTheProtocolMetrics(t *testing.T) {
	labels := func(extra ...string) []string { return append(append([]string{}, workload.LabelNames...), extra...) }
	redis := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_redis_requests_total", Help: "h"}, labels("destination", "command", "kind", "error"))
	redisDur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_redis_request_duration_seconds", Help: "h", Buckets: []float64{0.001, 0.1}}, labels("destination", "command", "kind", "error"))
	pg := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_postgres_requests_total", Help: "h"}, labels("destination", "command", "kind", "error"))
	pgDur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_postgres_request_duration_seconds", Help: "h", Buckets: []float64{0.001, 1}}, labels("destination", "command", "kind", "error"))
	dns := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_dns_requests_total", Help: "h"}, labels("destination", "kind", "qtype", "rcode", "failed"))
	wl := workload.Identity{Namespace: "shop", Pod: "cart-1", Container: "cart"}.Labels()
	// Each caller's servers (destination) add up in the recording rules.
	with := func(dest string, extra ...string) []string {
		return append(append(append([]string{}, wl...), dest), extra...)
	}

	cfg := NewConfig()
	cfg.EvaluationInterval = 100 * time.Millisecond
	if len(cfg.RuleFiles) != 1 || cfg.RuleFiles[0] != "embedded:*.rules.yml" {
		t.Fatalf("default rule files %v, want the embedded set", cfg.RuleFiles)
	}
	te := startEngine(t, cfg, redis, redisDur, pg, pgDur, dns)
	stored := func(q string) bool { return len(te.query(t, q).Data.Result) > 0 }
	// Counters that move between ingests, so the rates are not zero.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			redis.WithLabelValues(with("10.0.0.5:6379", "GET", "client", "none")...).Inc()
			redis.WithLabelValues(with("10.0.0.6:6379", "SET", "client", "OOM")...).Inc()
			redisDur.WithLabelValues(with("10.0.0.5:6379", "GET", "client", "none")...).Observe(0.0005)
			pg.WithLabelValues(with("10.0.0.7:5432", "SELECT", "client", "57")...).Inc()
			pgDur.WithLabelValues(with("10.0.0.7:5432", "SELECT", "client", "57")...).Observe(0.5)
			dns.WithLabelValues(with("10.96.0.10:53", "client", "A", "SERVFAIL", "true")...).Inc()
			dns.WithLabelValues(with("10.96.0.10:53", "client", "A", "NXDOMAIN", "true")...).Inc()
		}
	}()
	defer func() { close(stop); <-done }()

	for _, q := range []string{
		"vigil_redis_requests_total", "vigil_redis_request_duration_seconds_bucket",
		"vigil_postgres_requests_total", "vigil_postgres_request_duration_seconds_bucket",
		"vigil_dns_requests_total",
		`vigil:workload_redis_client_errors:rate1m{pod="cart-1"} > 0`,
		`vigil:workload_redis_client_request_duration_seconds_bucket:rate1m{pod="cart-1"} > 0`,
		`vigil:workload_postgres_client_errors:rate1m{pod="cart-1"} > 0`,
		`vigil:workload_postgres_client_request_duration_seconds_bucket:rate1m{pod="cart-1"} > 0`,
		`vigil:workload_dns_client_failures:rate1m{pod="cart-1"} > 0`,
	} {
		testenv.EventuallyTrue(t, 30*time.Second, q+" in the local TSDB", func() bool { return stored(q) })
	}
	for _, q := range []string{"vigil_redis_request_duration_seconds_count", "vigil_postgres_request_duration_seconds_sum"} {
		if stored(q) {
			t.Errorf("%s is stored, though no default rule reads it", q)
		}
	}
}
