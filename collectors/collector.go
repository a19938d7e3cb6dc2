// Package collectors defines how a metric source plugs into the agent. Each
// source lives in its own package under collectors/ and registers a Factory
// by name from an init function, so adding a source is one new package and
// one import in cmd/vigil.
package collectors

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

// Collector produces the metrics of one source. Update is called once per
// scrape of /metrics and once per ingestion into the local TSDB; it sends
// every current sample on ch and returns an error when the source could not
// be read. An error marks the collector failed for that scrape
// (vigil_collector_success 0) without affecting any other collector.
type Collector interface {
	Update(ctx context.Context, ch chan<- prometheus.Metric) error
}

// Lifecycle is implemented by collectors that run in the background (eBPF
// readers, log tailers, informers). Start is called once before the first
// Update; Shutdown releases everything Start acquired and must be safe to
// call when Start was never called or failed.
type Lifecycle interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Config is a collector's configuration section. Its zero value is never
// used: the factory's NewConfig returns the defaults, and the YAML section
// overrides them. Validate returns every problem, joined, with field names.
type Config interface {
	Validate() error
}

// Paths say where the host's pseudo-filesystems are mounted, so that an
// agent in a container reads the node's /proc and /sys (mounted, for
// example, at /host/proc) instead of its own.
type Paths struct {
	ProcFS string // default "/proc"
	SysFS  string // default "/sys"
	RootFS string // default "/"
}

// Settings is what the agent hands every collector.
type Settings struct {
	// Logger is already scoped with component=<name>.
	Logger *slog.Logger
	// Paths locate the host's /proc, /sys and root filesystem.
	Paths Paths
	// NodeName is the node's name (Kubernetes node name or hostname).
	NodeName string
	// Events receives fast-path events (process exits, OOM kills). Never nil.
	Events *event.Bus
	// Enricher adds Kubernetes metadata to workload identities. Never nil;
	// without Kubernetes it leaves identities unchanged.
	Enricher workload.Enricher
	// ProvideEnricher lets a metadata collector (Kubernetes) become the
	// Enricher every collector's Settings.Enricher delegates to; pass nil
	// at Shutdown.
	ProvideEnricher func(workload.Enricher)
	// Traces receives spans the collector produces (for example one per
	// HTTP request seen by eBPF). Never nil.
	Traces consumer.Traces
	// Logs receives log records the collector produces. Never nil.
	Logs consumer.Logs
}

// Factory creates one kind of collector.
type Factory struct {
	// Name is the collector's name: its configuration key under
	// "collectors:" and its "collector" label value.
	Name string
	// DefaultEnabled says whether the collector runs when the configuration
	// does not mention it.
	DefaultEnabled bool
	// NewConfig returns a pointer to the default configuration.
	NewConfig func() Config
	// New builds a collector from a validated configuration returned by
	// NewConfig. It must not start background work; Lifecycle.Start does.
	New func(cfg Config, set Settings) (Collector, error)
}

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
)

// Register adds a factory. It panics on a duplicate or incomplete factory,
// since both are programming errors found at start-up.
func Register(f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if f.Name == "" || f.NewConfig == nil || f.New == nil {
		panic(fmt.Sprintf("collectors: incomplete factory %q", f.Name))
	}
	if _, dup := factories[f.Name]; dup {
		panic(fmt.Sprintf("collectors: duplicate collector %q", f.Name))
	}
	factories[f.Name] = f
}

// Factories returns the registered factories sorted by name.
func Factories() []Factory {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Factory, 0, len(factories))
	for _, f := range factories {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, bool) {
	mu.Lock()
	defer mu.Unlock()
	f, ok := factories[name]
	return f, ok
}
