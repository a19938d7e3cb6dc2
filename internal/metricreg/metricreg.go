// Package metricreg is the agent's metrics registry: Prometheus's registry,
// which serves /metrics, and beside it the list of the collectors registered
// on it, so that the local TSDB's ingest can gather only the metric names
// its rules read (GatherNames). Prometheus's Gather converts every metric
// of every collector to its protocol buffer form and checks it; the ingest
// runs every evaluation interval (5 s by default) and stores a few dozen of
// the agent's metric names, so on an idle node most of its CPU went to
// converting metrics it then skipped (docs/cost.md).
package metricreg

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// Registry is a prometheus.Registry that remembers what was registered
// through it. Register everything through the Registry itself, not the
// embedded one: a collector registered on the embedded registry is served
// on /metrics but not seen by GatherNames.
type Registry struct {
	*prometheus.Registry

	mu         sync.Mutex
	collectors []prometheus.Collector

	// gather serialises GatherNames (its name cache is not shared).
	gather sync.Mutex
	names  nameCache
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{Registry: prometheus.NewRegistry()}
}

// Register implements prometheus.Registerer.
func (r *Registry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.collectors = append(r.collectors, c)
	r.mu.Unlock()
	return nil
}

// MustRegister implements prometheus.Registerer: it panics on the first
// collector that cannot be registered, as Prometheus's does.
func (r *Registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister implements prometheus.Registerer.
func (r *Registry) Unregister(c prometheus.Collector) bool {
	if !r.Registry.Unregister(c) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !reflect.TypeOf(c).Comparable() {
		// Prometheus unregisters by descriptors; a collector of a type
		// that cannot be compared is found by the same rule here.
		r.collectors = removeByDescs(r.collectors, c)
		return true
	}
	for i, x := range r.collectors {
		if reflect.TypeOf(x) == reflect.TypeOf(c) && x == c {
			r.collectors = append(r.collectors[:i], r.collectors[i+1:]...)
			break
		}
	}
	return true
}

// removeByDescs removes the first collector whose descriptors are c's.
func removeByDescs(list []prometheus.Collector, c prometheus.Collector) []prometheus.Collector {
	key := descKey(c)
	for i, x := range list {
		if descKey(x) == key {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

func descKey(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var parts []string
	for d := range ch {
		parts = append(parts, d.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

// NamesCollector is a collector that can collect less when only the
// families keep accepts are wanted. CollectNames sends at least those
// families, with the values Collect would send; GatherNames drops the rest.
type NamesCollector interface {
	CollectNames(keep func(name string) bool, ch chan<- prometheus.Metric)
}

// GatherNames collects every registered collector (through CollectNames
// when it is a NamesCollector, which may call keep from several goroutines
// at once) and returns, as metric
// families, only the metrics whose family name keep accepts; the others
// are dropped before they are converted or checked, and counted in
// skipped (one per metric: a histogram or a summary counts once). Metrics
// kept are checked as Prometheus's Gather checks them (valid label names,
// UTF-8 values); one that fails, or that cannot be written, is left out
// and reported in the error, the rest is returned.
func (r *Registry) GatherNames(keep func(name string) bool) (mfs []*dto.MetricFamily, skipped int, err error) {
	r.mu.Lock()
	cs := append([]prometheus.Collector(nil), r.collectors...)
	r.mu.Unlock()
	r.gather.Lock()
	defer r.gather.Unlock()
	r.names.next()

	ch := make(chan prometheus.Metric, 256)
	work := make(chan prometheus.Collector)
	var wg sync.WaitGroup
	for range min(len(cs), 4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if nc, ok := c.(NamesCollector); ok {
					nc.CollectNames(keep, ch)
				} else {
					c.Collect(ch)
				}
			}
		}()
	}
	go func() {
		for _, c := range cs {
			work <- c
		}
		close(work)
		wg.Wait()
		close(ch)
	}()

	byName := map[string]*dto.MetricFamily{}
	var errs []error
	for m := range ch {
		name := r.names.name(m.Desc())
		if name == "" || !keep(name) {
			skipped++
			continue
		}
		dm := &dto.Metric{}
		if werr := m.Write(dm); werr != nil {
			errs = append(errs, fmt.Errorf("collected metric %s: %w", name, werr))
			continue
		}
		if cerr := check(dm); cerr != nil {
			errs = append(errs, fmt.Errorf("collected metric %s: %w", name, cerr))
			continue
		}
		mf := byName[name]
		if mf == nil {
			mf = &dto.MetricFamily{Name: &name}
			byName[name] = mf
			mfs = append(mfs, mf)
		}
		mf.Metric = append(mf.Metric, dm)
	}
	sort.Slice(mfs, func(i, j int) bool { return mfs[i].GetName() < mfs[j].GetName() })
	if len(errs) > 0 {
		err = fmt.Errorf("%d metrics left out: %w", len(errs), errs[0])
	}
	return mfs, skipped, err
}

// check applies Prometheus's checks of a metric's labels.
func check(m *dto.Metric) error {
	for _, p := range m.GetLabel() {
		if !model.UTF8Validation.IsValidLabelName(p.GetName()) {
			return fmt.Errorf("invalid label name %q", p.GetName())
		}
		if !utf8.ValidString(p.GetValue()) {
			return fmt.Errorf("label %s: value %q is not valid UTF-8", p.GetName(), p.GetValue())
		}
	}
	return nil
}

// nameCache maps descriptors to their metric names. client_golang does not
// export a descriptor's name, only its String, which is formatted; the
// cache keeps the names of the descriptors seen in the last two gathers, so
// it stays bounded when a collector makes new descriptors at each collect.
type nameCache struct {
	cur, prev map[*prometheus.Desc]string
}

// next starts a gather: the previous one's entries stay reachable for it.
func (c *nameCache) next() {
	c.prev, c.cur = c.cur, make(map[*prometheus.Desc]string, len(c.cur))
}

// name returns d's metric name, or "" when d is not a valid descriptor.
func (c *nameCache) name(d *prometheus.Desc) string {
	if n, ok := c.cur[d]; ok {
		return n
	}
	n, ok := c.prev[d]
	if !ok {
		n = DescName(d)
	}
	c.cur[d] = n
	return n
}

// DescName returns the metric name of d ("" for a descriptor that holds an
// error, which has none).
func DescName(d *prometheus.Desc) string {
	s := d.String()
	const prefix = `Desc{fqName: `
	if !strings.HasPrefix(s, prefix) {
		return ""
	}
	q, err := strconv.QuotedPrefix(s[len(prefix):])
	if err != nil {
		return ""
	}
	n, err := strconv.Unquote(q)
	if err != nil {
		return ""
	}
	return n
}
