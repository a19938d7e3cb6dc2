// Package collectors defines what a metric source is (Collector,
// Lifecycle) and what the agent hands it (Settings). Each source lives in
// its own package under collectors/ and registers itself with the one
// component registry (component.RegisterCollector) from its init, so adding
// a source is one new package and one import in package components. No
// collector imports another: what they share lives in collectors/workload.
package collectors

import (
	"context"
	"log/slog"

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

// NamesUpdater is implemented by collectors that can read less when only
// some metric families are wanted (the local TSDB's ingest, which keeps
// only the families its rules read). UpdateNames sends at least every
// family keep accepts, with the values Update would send; it may send
// others, which the caller drops.
type NamesUpdater interface {
	UpdateNames(ctx context.Context, keep func(name string) bool, ch chan<- prometheus.Metric) error
}

// Lifecycle is implemented by collectors that run in the background (eBPF
// readers, log tailers, informers). Start is called once before the first
// Update; Shutdown releases everything Start acquired and must be safe to
// call when Start was never called or failed.
type Lifecycle interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
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
