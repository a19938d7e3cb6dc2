package metricreg

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// register fills r with a counter vector, a gauge, a histogram, a summary,
// a wrapped registerer's counter and a collector that makes a new
// descriptor at every collect.
func register(r *Registry) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "req_total", Help: "h"}, []string{"code"})
	cv.WithLabelValues("200").Add(3)
	cv.WithLabelValues("500").Add(1)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "temp", Help: "h"})
	g.Set(21)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lat_seconds", Help: "h", Buckets: []float64{0.1, 1}})
	h.Observe(0.5)
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "size_bytes", Help: "h", Objectives: map[float64]float64{0.5: 0.05}})
	s.Observe(10)
	r.MustRegister(cv, g, h, s, collectors.NewGoCollector(), dynamic{})
	w := prometheus.NewCounter(prometheus.CounterOpts{Name: "wrapped_total", Help: "h"})
	w.Inc()
	prometheus.WrapRegistererWith(prometheus.Labels{"engine": "rules"}, r).MustRegister(w)
}

// dynamic makes a new descriptor at every collect, as some collectors do.
type dynamic struct{}

func (dynamic) Describe(chan<- *prometheus.Desc) {}
func (dynamic) Collect(ch chan<- prometheus.Metric) {
	for i := range 3 {
		d := prometheus.NewDesc(fmt.Sprintf("dyn_%d", i), "h", nil, nil)
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(i))
	}
}

// GatherNames returns exactly what Prometheus's Gather returns for the
// families kept, and counts every metric left out.
func TestGatherNamesMatchesGather(t *testing.T) {
	r := New()
	register(r)
	all, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{"req_total": true, "lat_seconds": true, "size_bytes": true, "wrapped_total": true, "dyn_1": true}
	got, skipped, err := r.GatherNames(func(n string) bool { return keep[n] })
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range got {
		byName[mf.GetName()] = mf
	}
	for _, mf := range all {
		if !keep[mf.GetName()] {
			want += len(mf.GetMetric())
			continue
		}
		g := byName[mf.GetName()]
		if g == nil {
			t.Errorf("%s: not gathered", mf.GetName())
			continue
		}
		if len(g.GetMetric()) != len(mf.GetMetric()) {
			t.Errorf("%s: %d metrics, Gather has %d", mf.GetName(), len(g.GetMetric()), len(mf.GetMetric()))
			continue
		}
		// Gather sorts metrics by labels; GatherNames leaves them in
		// collection order.
		for _, m := range mf.GetMetric() {
			found := false
			for _, gm := range g.GetMetric() {
				if proto.Equal(m, gm) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: metric %v missing from GatherNames", mf.GetName(), m)
			}
		}
		delete(byName, mf.GetName())
	}
	for n := range byName {
		t.Errorf("%s gathered but not in Gather", n)
	}
	if skipped != want {
		t.Errorf("skipped %d metrics, Gather had %d outside the kept families", skipped, want)
	}
}

// The name cache holds the descriptors of the last two gathers, not every
// descriptor a collector ever made.
func TestNameCacheBounded(t *testing.T) {
	r := New()
	register(r)
	for range 50 {
		if _, _, err := r.GatherNames(func(string) bool { return false }); err != nil {
			t.Fatal(err)
		}
	}
	// A gather's distinct descriptors: the registered ones, the go
	// collector's, and 3 new ones per gather from dynamic.
	all, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if n, max := len(r.names.cur)+len(r.names.prev), 2*(len(all)+3); n > max {
		t.Errorf("name cache holds %d descriptors after 50 gathers, want at most %d", n, max)
	}
}

// A kept metric with an invalid label value is left out and reported; the
// rest is returned.
func TestGatherNamesInvalidMetric(t *testing.T) {
	r := New()
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "h"}, []string{"path"})
	cv.WithLabelValues("/ok").Inc()
	r.MustRegister(cv, badValue{})
	got, _, err := r.GatherNames(func(string) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("error = %v, want the invalid UTF-8 value named", err)
	}
	if len(got) != 1 || got[0].GetName() != "x_total" || len(got[0].GetMetric()) != 1 {
		t.Errorf("gathered %v, want x_total's one metric", got)
	}
}

type badValue struct{}

var badDesc = prometheus.NewDesc("bad", "h", []string{"v"}, nil)

func (badValue) Describe(ch chan<- *prometheus.Desc) { ch <- badDesc }
func (badValue) Collect(ch chan<- prometheus.Metric) { ch <- badMetric{} }

// badMetric writes a label value that is not UTF-8 (the constructors of
// client_golang refuse one, a hand-written Metric does not).
type badMetric struct{}

func (badMetric) Desc() *prometheus.Desc { return badDesc }
func (badMetric) Write(m *dto.Metric) error {
	m.Label = []*dto.LabelPair{{Name: proto.String("v"), Value: proto.String("\xff")}}
	m.Gauge = &dto.Gauge{Value: proto.Float64(1)}
	return nil
}

// A collector unregistered is no longer gathered; one registered twice is
// refused and listed once.
func TestRegisterUnregister(t *testing.T) {
	r := New()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "h"})
	r.MustRegister(g)
	if err := r.Register(g); err == nil {
		t.Error("a second Register of the same collector succeeded")
	}
	count := func() int {
		got, _, err := r.GatherNames(func(string) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d families, want 1", n)
	}
	if !r.Unregister(g) {
		t.Fatal("Unregister failed")
	}
	if n := count(); n != 0 {
		t.Errorf("%d families after Unregister, want 0", n)
	}
	if r.Unregister(g) {
		t.Error("a second Unregister succeeded")
	}
}

func TestDescName(t *testing.T) {
	for _, tc := range []struct {
		d    *prometheus.Desc
		want string
	}{
		{prometheus.NewDesc("a_total", `help with "quotes"`, []string{"x"}, prometheus.Labels{"c": "d"}), "a_total"},
		{prometheus.NewInvalidDesc(fmt.Errorf("broken")), ""},
	} {
		if got := DescName(tc.d); got != tc.want {
			t.Errorf("DescName(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// BenchmarkGather is the local TSDB's ingest on a node's worth of metrics
// (2,000 counter series and 200 histograms of 12 buckets) of which the
// rules read one counter and one histogram family: Prometheus's Gather of
// everything against GatherNames of the two, side by side.
func BenchmarkGather(b *testing.B) {
	r := New()
	for f := range 20 {
		cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: fmt.Sprintf("c%d_total", f), Help: "h"}, []string{"pod", "container"})
		for i := range 100 {
			cv.WithLabelValues(fmt.Sprintf("pod-%d", i), "app").Add(float64(i))
		}
		r.MustRegister(cv)
	}
	for f := range 2 {
		hv := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: fmt.Sprintf("h%d_seconds", f), Help: "h", Buckets: prometheus.ExponentialBuckets(0.001, 2, 12)}, []string{"pod"})
		for i := range 100 {
			hv.WithLabelValues(fmt.Sprintf("pod-%d", i)).Observe(0.01)
		}
		r.MustRegister(hv)
	}
	keep := func(n string) bool { return n == "c0_total" || n == "h0_seconds" }
	b.Run("Gather", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GatherNames", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := r.GatherNames(keep); err != nil {
				b.Fatal(err)
			}
		}
	})
}
