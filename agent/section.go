package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/internal/event"
	"github.com/vigil-agent/vigil/rules"
)

// Component is a top-level part of the agent with its own configuration
// section (the rules engine, the healing engine, the exporters). Shutdown
// must be safe to call when Start was never called or failed.
type Component interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Reconfigurable is implemented by components that take a new, validated
// configuration section on reload. An error keeps the running configuration;
// the component must then be unchanged.
type Reconfigurable interface {
	ApplyConfig(ctx context.Context, cfg SectionConfig) error
}

// SectionConfig is a component's configuration section.
type SectionConfig interface {
	Validate() error
}

// Host is what the agent shares with its components.
type Host struct {
	// Logger is scoped with component=<section name>.
	Logger *slog.Logger
	// NodeName is this node's name.
	NodeName string
	// Registry is the registry behind /metrics; register self-metrics here.
	Registry *prometheus.Registry
	// Gatherer gathers every metric the agent collects (the collectors'
	// samples and self-metrics): the local TSDB and the exporters read it.
	Gatherer prometheus.Gatherer
	// Events carries fast-path events from the collectors.
	Events *event.Bus
	// Alerts is the one alert stream: the rules engine publishes on it and
	// the healing engine subscribes to it.
	Alerts *rules.Stream
	// Handle registers an HTTP handler on the agent's server. Call it from
	// the component's constructor or Start, once.
	Handle func(pattern string, h http.Handler)
	// Pipeline lets exporters receive the spans and log records the
	// collectors produce.
	Pipeline *Pipeline
}

// SectionFactory creates one kind of component from its section.
type SectionFactory struct {
	// Name is the top-level YAML key, e.g. "rules".
	Name string
	// NewConfig returns a pointer to the section's defaults.
	NewConfig func() SectionConfig
	// Enabled reports whether a (validated) section asks for the component
	// to run; nil means always.
	Enabled func(cfg SectionConfig) bool
	// New builds the component; it must not start background work.
	New func(cfg SectionConfig, h *Host) (Component, error)
}

var (
	sectionsMu sync.Mutex
	sections   = map[string]SectionFactory{}
)

// RegisterSection adds a top-level section. It panics on a duplicate name
// or one of the agent's own sections.
func RegisterSection(f SectionFactory) {
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	switch f.Name {
	case "", "global", "server", "log", "collectors":
		panic(fmt.Sprintf("agent: reserved section name %q", f.Name))
	}
	if _, dup := sections[f.Name]; dup {
		panic(fmt.Sprintf("agent: duplicate section %q", f.Name))
	}
	sections[f.Name] = f
}

func sectionFactories() []SectionFactory {
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	out := make([]SectionFactory, 0, len(sections))
	for _, f := range sections {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
