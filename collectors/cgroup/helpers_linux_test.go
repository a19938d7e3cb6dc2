package cgroup

import (
	"bytes"
	"context"
	"log/slog"
	"sort"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/workload"
)

// staticEnricher stands in for the Kubernetes metadata enricher (built by
// the kube collector, which needs an API server): it knows a fixed set of
// pods and containers.
type staticEnricher struct {
	pods       map[string][2]string // pod UID -> namespace, name
	containers map[string]string    // container ID -> name
}

func (e staticEnricher) Enrich(id *workload.Identity) {
	if p, ok := e.pods[id.PodUID]; ok {
		id.Namespace, id.Pod = p[0], p[1]
	}
	if n, ok := e.containers[id.ContainerID]; ok {
		id.Container = n
	}
}

type noEnricher struct{}

func (noEnricher) Enrich(*workload.Identity) {}

// adapter turns the collector into a prometheus.Collector, the way the
// agent's collector set runs it, so tests can gather and compare.
type adapter struct {
	t testing.TB
	c *Collector
}

func (a adapter) Describe(chan<- *prometheus.Desc) {}

func (a adapter) Collect(ch chan<- prometheus.Metric) {
	if err := a.c.Update(context.Background(), ch); err != nil {
		a.t.Errorf("Update: %v", err)
	}
}

// newStarted builds and starts a collector reading sysfs.
func newStarted(t testing.TB, cfg *Config, sysfs string, e workload.Enricher, logs *bytes.Buffer) *Collector {
	t.Helper()
	if e == nil {
		e = noEnricher{}
	}
	var h slog.Handler = slog.DiscardHandler
	if logs != nil {
		h = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	c, err := New(cfg, collectors.Settings{Logger: slog.New(h), Paths: collectors.Paths{ProcFS: "/proc", SysFS: sysfs, RootFS: "/"}, Enricher: e})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	return c
}

// sample is one gathered series.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape gathers the collector through a pedantic registry (which also
// rejects duplicate series) and returns every sample.
func scrape(t testing.TB, c *Collector) []sample {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(adapter{t, c})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var out []sample
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{name: mf.GetName(), labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// find returns the sample of name whose cgroup label is cg.
func find(samples []sample, name, cg string) (sample, bool) {
	for _, s := range samples {
		if s.name == name && s.labels["cgroup"] == cg {
			return s, true
		}
	}
	return sample{}, false
}

// cgroupsOf lists the cgroup label values of name, sorted.
func cgroupsOf(samples []sample, name string) []string {
	var out []string
	for _, s := range samples {
		if s.name == name {
			out = append(out, s.labels["cgroup"])
		}
	}
	sort.Strings(out)
	return out
}

// newResolver is the shared workload resolver over a collector's paths,
// as the eBPF collector builds it.
func newResolver(paths collectors.Paths, enricher workload.Enricher) *workload.Resolver {
	return workload.NewResolver(paths.ProcFS, paths.SysFS, enricher)
}

func settingsFor(sysfs string) collectors.Settings {
	return collectors.Settings{Logger: slog.New(slog.DiscardHandler), Paths: collectors.Paths{ProcFS: "/proc", SysFS: sysfs, RootFS: "/"}, Enricher: noEnricher{}}
}
