//go:build !linux

package ebpf

import (
	"context"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
)

// unsupported is the collector on systems without eBPF: it logs once at
// start and exports nothing, so the agent and its other collectors run.
type unsupported struct{ set collectors.Settings }

func newCollector(_ *Config, set collectors.Settings) (collectors.Collector, error) {
	return &unsupported{set: set}, nil
}

// Start implements collectors.Lifecycle.
func (u *unsupported) Start(context.Context) error {
	u.set.Logger.Warn("eBPF is not supported on this operating system; no eBPF program is loaded", "goos", runtime.GOOS)
	return nil
}

// Shutdown implements collectors.Lifecycle.
func (u *unsupported) Shutdown(context.Context) error { return nil }

// Update implements collectors.Collector.
func (u *unsupported) Update(context.Context, chan<- prometheus.Metric) error { return nil }
