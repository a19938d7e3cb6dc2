package rules

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
)

func newTestStorage(t *testing.T, retention time.Duration, maxSeries int) *LocalStorage {
	t.Helper()
	s, err := NewLocalStorage(StorageOptions{Retention: retention, MaxSeries: maxSeries, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func instant(t *testing.T, s *LocalStorage, q string, ts time.Time) promql.Vector {
	t.Helper()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	defer eng.Close()
	qry, err := eng.NewInstantQuery(context.Background(), s, nil, q, ts)
	if err != nil {
		t.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	v, _ := res.Vector()
	return v
}

func TestIngestAllMetricTypes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"empty"})
	c.WithLabelValues("").Add(3)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "h", Buckets: []float64{0.5, 1}})
	h.Observe(0.7)
	sm := prometheus.NewSummary(prometheus.SummaryOpts{Name: "s", Help: "h", Objectives: map[float64]float64{0.5: 0.05}})
	sm.Observe(2)
	reg.MustRegister(c, h, sm)
	s := newTestStorage(t, 10*time.Minute, 1000)
	now := time.Now()
	if err := s.Ingest(reg, now, 1); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]float64{
		`c_total`:                     3, // the empty label is dropped, as Prometheus does
		`h_seconds_bucket{le="1"}`:    1,
		`h_seconds_bucket{le="0.5"}`:  0,
		`h_seconds_bucket{le="+Inf"}`: 1,
		`h_seconds_count`:             1,
		`s{quantile="0.5"}`:           2,
		`s_sum`:                       2,
	} {
		v := instant(t, s, q, now)
		if len(v) != 1 || v[0].F != want {
			t.Errorf("%s = %v, want %v", q, v, want)
		}
		if len(v) == 1 && v[0].Metric.Has("empty") {
			t.Errorf("%s kept an empty label", q)
		}
	}
}

func TestVanishedSeriesGoStaleAndAreTruncated(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g", Help: "h"}, []string{"id"})
	reg.MustRegister(g)
	g.WithLabelValues("keep").Set(1)
	g.WithLabelValues("gone").Set(1)
	retention := 2 * time.Minute
	s := newTestStorage(t, retention, 1000)
	start := time.Now().Add(-time.Hour)
	ts := start
	gen := uint64(0)
	step := func() {
		t.Helper()
		gen++
		ts = ts.Add(5 * time.Second)
		if err := s.Ingest(reg, ts, gen); err != nil {
			t.Fatal(err)
		}
	}
	step()
	step()
	g.DeleteLabelValues("gone")
	step()
	// Without the staleness marker the lookback would still find it.
	if v := instant(t, s, `g{id="gone"}`, ts); len(v) != 0 {
		t.Fatalf("vanished series still visible: %v", v)
	}
	if got := testutil.ToFloat64(s.stale); got != 1 {
		t.Errorf("stale markers %v, want 1", got)
	}
	// The marker is a real staleness NaN in the head.
	q, _ := s.Querier(ts.UnixMilli(), ts.UnixMilli())
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "id", "gone"))
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			if _, v := it.At(); !value.IsStaleNaN(v) {
				t.Errorf("sample at marker time is %v, not a staleness marker", v)
			}
		}
	}
	q.Close()
	// Run well past the retention: old chunks go and the vanished series
	// is garbage-collected, so memory stays bounded.
	for i := 0; i < 200; i++ {
		step()
	}
	if min := s.Head().MinTime(); time.UnixMilli(min).Before(ts.Add(-retention - time.Minute)) {
		t.Errorf("head keeps data from %s, older than retention (now %s)", time.UnixMilli(min), ts)
	}
	if n := s.Head().NumSeries(); n != 1 {
		t.Errorf("head has %d series, want only the live one", n)
	}
	if v := instant(t, s, `g{id="keep"}`, ts); len(v) != 1 || v[0].F != 1 {
		t.Errorf("live series lost: %v", v)
	}
}

func TestMaxSeriesDropsAndCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g", Help: "h"}, []string{"id"})
	reg.MustRegister(g)
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		g.WithLabelValues(id).Set(1)
	}
	s := newTestStorage(t, 10*time.Minute, 3)
	if err := s.Ingest(reg, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if n := s.Head().NumSeries(); n != 3 {
		t.Errorf("series %d, want 3", n)
	}
	if got := testutil.ToFloat64(s.dropped); got != 2 {
		t.Errorf("dropped %v, want 2", got)
	}
}

// TestNewCounterSeriesCountFromZero: a counter series that appears after
// the first ingest (a crash-looping container gets a new container ID, so
// a new series, at each restart) counts in increase() from its first
// sample; one present at the first ingest, or one that vanished and came
// back with an old total, does not jump.
func TestNewCounterSeriesCountFromZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	exits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "exits_total", Help: "h"}, []string{"container_id"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lat_seconds", Help: "h", Buckets: []float64{1}}, []string{"pod"})
	reg.MustRegister(exits, lat)
	exits.WithLabelValues("old").Add(5) // before the agent's first ingest
	s := newTestStorage(t, 10*time.Minute, 1000)
	t0 := time.Now().Add(-time.Minute)
	step := 5 * time.Second
	for i := 0; i < 3; i++ {
		if err := s.Ingest(reg, t0.Add(time.Duration(i)*step), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	// Three restarts, three new series with one exit each, between ingests.
	for i, id := range []string{"a", "b", "c"} {
		exits.WithLabelValues(id).Inc()
		lat.WithLabelValues(id).Observe(0.5)
		if err := s.Ingest(reg, t0.Add(time.Duration(3+i)*step), uint64(4+i)); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(5 * step)
	if v := instant(t, s, `sum(increase(exits_total{container_id!="old"}[1m]))`, now); len(v) != 1 || v[0].F < 2.9 {
		t.Errorf("increase over the new series = %v, want 3", v)
	}
	if v := instant(t, s, `sum(increase(lat_seconds_count[1m]))`, now); len(v) != 1 || v[0].F < 2.9 {
		t.Errorf("histogram count increase over the new series = %v, want 3", v)
	}
	if v := instant(t, s, `increase(exits_total{container_id="old"}[1m])`, now); len(v) != 1 || v[0].F != 0 {
		t.Errorf("a series present at the first ingest must not jump: %v", v)
	}
	// A series that vanishes and comes back with its old total is not new.
	reg.Unregister(exits)
	if err := s.Ingest(reg, t0.Add(6*step), 7); err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(exits)
	if err := s.Ingest(reg, t0.Add(7*step), 8); err != nil {
		t.Fatal(err)
	}
	if v := instant(t, s, `increase(exits_total{container_id="a"}[10s])`, t0.Add(7*step)); len(v) != 0 && v[0].F != 0 {
		t.Errorf("a series that came back must not count its old total again: %v", v)
	}
	if got := testutil.ToFloat64(s.zeros); got < 6 {
		t.Errorf("vigil_rules_tsdb_created_zeros_total = %v, want ≥ 6", got)
	}
}
