// Package component is the one registry of Vigil's parts: every collector
// (a metric source under "collectors:") and every top-level section (rules,
// healing, exporters) registers itself from its own package's init, with
// its configuration type, defaults and constructor:
//
//	func init() { component.RegisterCollector("textfile", false, NewConfig, New) }
//	func init() { component.RegisterSection("rules", NewConfig, (*Config).On, newEngine) }
//
// The generic Register functions do the one type assertion, so that no
// package asserts a configuration type. The agent builds, starts,
// reconfigures and stops what is registered and imports none of the parts
// by name; package components is the one place that says which parts a
// binary has.
package component

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/internal/alert"
	"github.com/vigil-agent/vigil/internal/event"
)

// Config is a component's configuration section: a pointer to a struct
// whose zero value is never used (the factory's NewConfig returns the
// defaults, the YAML section overrides them). Validate returns every
// problem, joined, each naming its field; it reads no file and changes
// nothing.
type Config interface {
	Validate() error
}

// Component is a running top-level section. Shutdown must be safe to call
// when Start was never called or failed.
type Component interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Reconfigurable is implemented by a section component of configuration
// type C that takes a new, validated section on reload. An error keeps the
// running configuration; the component must then be unchanged.
type Reconfigurable[C Config] interface {
	ApplyConfig(ctx context.Context, cfg C) error
}

// Checker is implemented by configurations that name files (rule files,
// policy files, TLS files, a kubeconfig). Validate never reads them; Check
// does, reporting what would fail when the part is built or applied,
// without changing anything. The agent calls it for every enabled part when
// it loads a configuration (so `vigil config check` and a reload refuse a
// broken file before anything is applied) and compares the digest it
// returns, so that a reload sees a file whose content changed.
type Checker interface {
	Check() (digest string, err error)
}

// APITokenSource is implemented by the section configuration that names
// the file holding the agent's API token (healing.auth_token_file).
type APITokenSource interface {
	APITokenFile() string
}

// Host is what the agent shares with its section components.
type Host struct {
	// Logger is scoped with component=<section name>.
	Logger *slog.Logger
	// NodeName is this node's name.
	NodeName string
	// Registry is the registry behind /metrics; register self-metrics here.
	Registry prometheus.Registerer
	// Gatherer gathers every metric the agent collects (the collectors'
	// samples and self-metrics): the local TSDB and the exporters read it.
	// The agent's also gathers selected metric names only
	// (rules.NameGatherer), which the local TSDB's ingest uses.
	Gatherer prometheus.Gatherer
	// Events carries fast-path events from the collectors.
	Events *event.Bus
	// Alerts is the one alert stream: the rules engine publishes on it and
	// the healing engine subscribes to it.
	Alerts *alert.Stream
	// Handle registers an HTTP handler on the agent's server, behind the
	// API token for /api/v1/ paths. Call it from the constructor, once.
	Handle func(pattern string, h http.Handler)
	// HandleOwnAuth registers a handler that authenticates its requests
	// itself (the Alertmanager webhook's own token), so the API token does
	// not apply to it.
	HandleOwnAuth func(pattern string, h http.Handler)
	// Pipeline lets exporters receive the spans and log records the
	// collectors produce.
	Pipeline *Pipeline
	// Collectors returns the collectors running now (a reload may rebuild
	// them: ask again rather than keep the answer). The overhead governor
	// sheds load through those that implement its interfaces.
	Collectors func() []collectors.Collector
}

// Kind says which part of the configuration a component's section is in.
type Kind string

// The kinds of components.
const (
	// KindCollector sections live under "collectors:".
	KindCollector Kind = "collector"
	// KindSection sections are top-level keys (rules, healing, exporters).
	KindSection Kind = "section"
)

// Factory is one registered component.
type Factory struct {
	Kind Kind
	// Name is the configuration key (and a collector's "collector" label).
	Name string
	// DefaultEnabled says whether a collector runs when the configuration
	// does not mention it.
	DefaultEnabled bool
	// NewConfig returns a pointer to the defaults.
	NewConfig func() Config

	enabled      func(Config) bool
	newCollector func(Config, collectors.Settings) (collectors.Collector, error)
	newSection   func(Config, *Host) (Component, error)
	apply        func(context.Context, Component, Config) (bool, error)
}

// Enabled reports whether a validated section asks for its component to
// run. For collectors "enabled:" decides, and this is always true.
func (f Factory) Enabled(cfg Config) bool { return f.enabled == nil || f.enabled(cfg) }

// NewCollector builds a collector from a validated configuration returned
// by NewConfig. It must not start background work (collectors.Lifecycle).
func (f Factory) NewCollector(cfg Config, set collectors.Settings) (collectors.Collector, error) {
	if f.newCollector == nil {
		return nil, fmt.Errorf("%s is not a collector", f.Name)
	}
	return f.newCollector(cfg, set)
}

// NewSection builds a section component; it must not start background
// work.
func (f Factory) NewSection(cfg Config, h *Host) (Component, error) {
	if f.newSection == nil {
		return nil, fmt.Errorf("%s is not a section", f.Name)
	}
	return f.newSection(cfg, h)
}

// Apply hands a running section component its new configuration. It
// returns false when the component cannot be reconfigured (its settings
// take effect at the next restart).
func (f Factory) Apply(ctx context.Context, c Component, cfg Config) (bool, error) {
	if f.apply == nil {
		return false, nil
	}
	return f.apply(ctx, c, cfg)
}

var (
	mu       sync.Mutex
	registry = map[Kind]map[string]Factory{}
)

// reserved are the agent's own top-level sections.
var reserved = map[string]bool{"": true, "global": true, "server": true, "log": true, "collectors": true}

func register(f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if f.Name == "" || f.NewConfig == nil {
		panic(fmt.Sprintf("component: incomplete %s %q", f.Kind, f.Name))
	}
	if f.Kind == KindSection && reserved[f.Name] {
		panic(fmt.Sprintf("component: reserved section name %q", f.Name))
	}
	if registry[f.Kind] == nil {
		registry[f.Kind] = map[string]Factory{}
	}
	if _, dup := registry[f.Kind][f.Name]; dup {
		panic(fmt.Sprintf("component: duplicate %s %q", f.Kind, f.Name))
	}
	registry[f.Kind][f.Name] = f
}

// RegisterCollector registers a collector from its package's init: its
// name, whether it runs by default, its defaults and its constructor. It
// panics on a duplicate name, a programming error found at start-up.
func RegisterCollector[C Config, T collectors.Collector](name string, defaultEnabled bool, newConfig func() C, build func(C, collectors.Settings) (T, error)) {
	register(Factory{
		Kind: KindCollector, Name: name, DefaultEnabled: defaultEnabled,
		NewConfig: func() Config { return newConfig() },
		newCollector: func(cfg Config, set collectors.Settings) (collectors.Collector, error) {
			return build(cfg.(C), set)
		},
	})
}

// RegisterSection registers a top-level section from its package's init:
// its key, its defaults, whether a section asks for the component to run
// (nil: always) and its constructor. A component implementing
// Reconfigurable[C] takes new sections on reload.
func RegisterSection[C Config, T Component](name string, newConfig func() C, enabled func(C) bool, build func(C, *Host) (T, error)) {
	f := Factory{
		Kind: KindSection, Name: name,
		NewConfig: func() Config { return newConfig() },
		newSection: func(cfg Config, h *Host) (Component, error) {
			return build(cfg.(C), h)
		},
		apply: func(ctx context.Context, c Component, cfg Config) (bool, error) {
			r, ok := c.(Reconfigurable[C])
			if !ok {
				return false, nil
			}
			return true, r.ApplyConfig(ctx, cfg.(C))
		},
	}
	if enabled != nil {
		f.enabled = func(cfg Config) bool { return enabled(cfg.(C)) }
	}
	register(f)
}

// Factories returns the registered components of a kind, sorted by name.
func Factories(kind Kind) []Factory {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Factory, 0, len(registry[kind]))
	for _, f := range registry[kind] {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the component of a kind registered under name.
func Lookup(kind Kind, name string) (Factory, bool) {
	mu.Lock()
	defer mu.Unlock()
	f, ok := registry[kind][name]
	return f, ok
}
