// Package agent wires Vigil together: it loads the configuration, builds
// and runs the collectors, serves the HTTP endpoints and reloads the
// configuration on request without losing the running one.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"golang.org/x/time/rate"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/component"
	"github.com/vigil-agent/vigil/internal/alert"
	"github.com/vigil-agent/vigil/internal/event"
	"github.com/vigil-agent/vigil/internal/metricreg"
)

// Options are the parts of an agent that do not come from the
// configuration file.
type Options struct {
	// ConfigFile is the file to (re)load; empty means the embedded default.
	ConfigFile string
	// ListenAddress overrides server.listen_address when not empty.
	ListenAddress string
	// WebConfigFile overrides server.web_config_file when not empty
	// (--web.config.file).
	WebConfigFile string
	// EnableLifecycle turns server.enable_lifecycle on (--web.enable-lifecycle).
	EnableLifecycle bool
	// Logger is the base logger; LogLevel is its level, which reloads set.
	Logger   *slog.Logger
	LogLevel *slog.LevelVar
	// DropCapabilities makes Run drop the capabilities the agent does not
	// use at run time once it has started (global.keep_capabilities) and
	// serve vigil_capabilities. vigil run sets it; tests that run an agent
	// inside their own process leave it off.
	DropCapabilities bool
	// SetMemoryLimit makes Run and each reload set the Go runtime's soft
	// memory limit from global.memory_limit (a process-wide setting):
	// vigil run sets it; tests that run an agent in their process leave it
	// off.
	SetMemoryLimit bool
}

// Agent is one running Vigil.
type Agent struct {
	opts   Options
	logger *slog.Logger
	reg    *metricreg.Registry
	events *event.Bus
	set    *collectorSet
	mux    *http.ServeMux

	alerts   *alert.Stream
	pipeline *component.Pipeline
	// ownAuth holds the paths whose handlers check their own credentials
	// (Host.HandleOwnAuth), exempt from the API token.
	ownAuth  sync.Map
	enricher workload.Switch
	// components are the running section components by name; only Run
	// and Reload (serialised by reloadMu) touch the map.
	components map[string]component.Component

	reloadMu sync.Mutex // serialises reloads
	cfg      atomic.Pointer[Config]
	ready    atomic.Bool

	reloadSuccess   prometheus.Gauge
	reloadTimestamp prometheus.Gauge
	componentUp     *prometheus.GaugeVec

	listener  net.Listener
	server    *http.Server
	guard     *webGuard
	rejectLog *rate.Sometimes
}

// New builds an agent from a validated configuration. Nothing runs until
// Run.
func New(cfg *Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LogLevel == nil {
		opts.LogLevel = new(slog.LevelVar)
	}
	opts.applyServer(&cfg.Server)
	if err := cfg.Server.validate(apiTokenFile(cfg)); err != nil {
		return nil, err
	}
	a := &Agent{
		opts:   opts,
		logger: opts.Logger,
		reg:    metricreg.New(),
		events: event.NewBus(),
		set:    &collectorSet{running: map[string]*runningCollector{}},
		mux:    http.NewServeMux(),

		alerts:     alert.NewStream(),
		pipeline:   component.NewPipeline(),
		components: map[string]component.Component{},
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		reloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
		componentUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_component_up",
			Help: "Whether a component started and is running (1) or failed to start (0).",
		}, []string{"component"}),
	}
	a.reg.MustRegister(
		pcollectors.NewGoCollector(),
		pcollectors.NewProcessCollector(pcollectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("vigil"),
		a.reloadSuccess, a.reloadTimestamp, a.componentUp,
		a.set,
	)
	if opts.DropCapabilities {
		a.reg.MustRegister(newCapabilityCollector())
	}
	a.guard = newWebGuard(a.reg)
	a.rejectLog = newRejectLog()
	a.cfg.Store(cfg)
	a.applyLogLevel(cfg)
	a.routes()
	return a, nil
}

// Registry returns the registry behind /metrics. Subsystems register their
// own metrics here; the local TSDB and the exporters gather from it.
func (a *Agent) Registry() *metricreg.Registry { return a.reg }

// Events returns the fast-path event bus.
func (a *Agent) Events() *event.Bus { return a.events }

// Alerts returns the alert stream.
func (a *Agent) Alerts() *alert.Stream { return a.alerts }

// Pipeline returns the span and log-record pipeline.
func (a *Agent) Pipeline() *component.Pipeline { return a.pipeline }

// Config returns the configuration in force.
func (a *Agent) Config() *Config { return a.cfg.Load() }

// Handle registers an extra HTTP handler; call it before Run.
func (a *Agent) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// Addr returns the address the HTTP server listens on, once Run has bound
// it.
func (a *Agent) Addr() string {
	if a.listener == nil {
		return ""
	}
	return a.listener.Addr().String()
}

// Listen binds the HTTP listener. Run calls it when it has not been called;
// calling it first lets a caller learn the bound address (port 0).
func (a *Agent) Listen() error {
	if a.listener != nil {
		return nil
	}
	l, err := net.Listen("tcp", a.cfg.Load().Server.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Load().Server.ListenAddress, err)
	}
	a.listener = l
	return nil
}

// Run starts the collectors and the HTTP server and blocks until ctx is
// done, then shuts everything down.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Listen(); err != nil {
		return err
	}
	cfg := a.cfg.Load()
	if a.opts.SetMemoryLimit {
		a.applyMemoryLimit(cfg)
	}
	if err := a.apply(ctx, cfg, true); err != nil {
		a.listener.Close()
		return err
	}
	if err := a.startComponents(ctx, cfg); err != nil {
		a.shutdownAll(ctx)
		a.listener.Close()
		return err
	}
	a.reloadSuccess.Set(1)
	a.reloadTimestamp.SetToCurrentTime()
	if a.opts.DropCapabilities {
		a.dropCapabilities(cfg)
	}

	limited := newConnLimiter(a.listener, cfg.Server.MaxConnections, a.reg)
	a.server = &http.Server{
		Handler:           a.protect(a.mux),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		ConnState:         limited.connState,
		ErrorLog:          slog.NewLogLogger(a.logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- a.serve(limited, cfg.Server) }()
	a.ready.Store(true)
	a.logger.Info("vigil is ready", "address", a.Addr(), "config", configName(cfg))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	a.ready.Store(false)
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := a.server.Shutdown(shutCtx); serr != nil && err == nil {
		err = serr
	}
	a.shutdownAll(shutCtx)
	a.logger.Info("vigil stopped")
	return err
}

// applyServer applies the command line's overrides to a server section.
func (o Options) applyServer(s *ServerConfig) {
	if o.ListenAddress != "" {
		s.ListenAddress = o.ListenAddress
	}
	if o.WebConfigFile != "" {
		s.WebConfigFile = o.WebConfigFile
	}
	if o.EnableLifecycle {
		s.EnableLifecycle = true
	}
}

func configName(c *Config) string {
	if c.File == "" {
		return "embedded default"
	}
	return c.File
}

// Reload reads the configuration file again and applies it. A file that
// does not load, or a component that cannot be built from it, leaves the
// running configuration untouched and sets
// vigil_config_last_reload_successful to 0.
func (a *Agent) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	var (
		cfg *Config
		err error
	)
	if a.opts.ConfigFile == "" {
		cfg, err = LoadDefault()
	} else {
		cfg, err = LoadFile(a.opts.ConfigFile)
	}
	if err == nil {
		a.opts.applyServer(&cfg.Server)
		// Components first: their ApplyConfig is all-or-nothing, and the
		// collector swap below cannot fail once its collectors are built.
		err = a.reconfigureComponents(ctx, cfg)
		if err == nil {
			err = a.apply(ctx, cfg, false)
		}
	}
	if err != nil {
		a.reloadSuccess.Set(0)
		a.logger.Error("configuration reload failed; keeping the running configuration", "err", err)
		return err
	}
	if old := a.cfg.Load(); old.Server != cfg.Server {
		a.logger.Warn("server settings changed; they take effect at the next restart")
	}
	if old := a.cfg.Load(); a.opts.DropCapabilities && !slices.Equal(old.Global.KeepCapabilities, cfg.Global.KeepCapabilities) {
		a.logger.Warn("global.keep_capabilities changed; it takes effect at the next restart (a dropped capability cannot come back)")
	}
	a.cfg.Store(cfg)
	a.applyLogLevel(cfg)
	if a.opts.SetMemoryLimit {
		a.applyMemoryLimit(cfg)
	}
	a.reloadSuccess.Set(1)
	a.reloadTimestamp.SetToCurrentTime()
	a.logger.Info("configuration reloaded", "config", configName(cfg))
	return nil
}

func (a *Agent) applyLogLevel(cfg *Config) {
	if l, err := parseLevel(cfg.Log.Level); err == nil {
		a.opts.LogLevel.Set(l)
	}
}

// apply builds the collectors of cfg, keeping running collectors whose
// configuration did not change, and swaps them in. When any collector
// cannot be built, the new ones are discarded and nothing changes.
func (a *Agent) apply(ctx context.Context, cfg *Config, first bool) error {
	old := a.cfg.Load()
	globalSame := !first && reflect.DeepEqual(old.Global, cfg.Global)

	a.set.mu.RLock()
	current := a.set.running
	a.set.mu.RUnlock()

	next := map[string]*runningCollector{}
	var built []*runningCollector
	var errs []error
	for _, name := range cfg.Collectors.names() {
		sec := cfg.Collectors[name]
		if !sec.Enabled {
			continue
		}
		if rc, ok := current[name]; ok && globalSame && sameCollector(rc.cfg, sec) && old.digests["collectors."+name] == cfg.digests["collectors."+name] {
			next[name] = rc
			continue
		}
		f, _ := component.Lookup(component.KindCollector, name)
		logger := a.logger.With("component", "collector/"+name)
		c, err := f.NewCollector(sec.Config, a.settings(cfg, logger))
		if err != nil {
			errs = append(errs, fmt.Errorf("collectors.%s: %w", name, err))
			continue
		}
		rc := &runningCollector{name: name, cfg: sec, c: c, logger: logger}
		built = append(built, rc)
		next[name] = rc
	}
	if len(errs) > 0 {
		a.shutdownCollectors(ctx, built)
		return errors.Join(errs...)
	}
	for _, rc := range built {
		a.start(ctx, rc)
	}
	a.set.mu.Lock()
	a.set.running = next
	a.set.timeout = cfg.Global.CollectorTimeout
	a.set.mu.Unlock()

	var stale []*runningCollector
	for name, rc := range current {
		if next[name] != rc {
			stale = append(stale, rc)
			if _, still := next[name]; !still {
				a.componentUp.DeleteLabelValues("collector/" + name)
			}
		}
	}
	a.shutdownCollectors(ctx, stale)
	return nil
}

// start runs a collector's Lifecycle.Start. A collector that cannot start
// (a missing kernel feature, a missing privilege) is logged and reported as
// down; the others carry on.
func (a *Agent) start(ctx context.Context, rc *runningCollector) {
	rc.started = true
	if lc, ok := rc.c.(collectors.Lifecycle); ok {
		if err := lc.Start(ctx); err != nil {
			rc.started = false
			rc.err = fmt.Errorf("start failed: %w", err)
			rc.logger.Error("collector failed to start; other collectors keep running", "err", err)
		}
	}
	up := 0.0
	if rc.started {
		up = 1
	}
	a.componentUp.WithLabelValues("collector/" + rc.name).Set(up)
}

func (a *Agent) shutdownCollectors(ctx context.Context, rcs []*runningCollector) {
	for _, rc := range rcs {
		if lc, ok := rc.c.(collectors.Lifecycle); ok {
			if err := lc.Shutdown(ctx); err != nil {
				rc.logger.Warn("collector shutdown failed", "err", err)
			}
		}
	}
}

// host returns what a component named name gets from the agent.
func (a *Agent) host(cfg *Config, name string) *component.Host {
	return &component.Host{
		Logger:   a.logger.With("component", name),
		NodeName: nodeName(cfg),
		Registry: a.reg,
		Gatherer: a.reg,
		Events:   a.events,
		Alerts:   a.alerts,
		Handle:   a.Handle,
		HandleOwnAuth: func(pattern string, h http.Handler) {
			a.ownAuth.Store(pathOf(pattern), true)
			a.Handle(pattern, h)
		},
		Pipeline:   a.pipeline,
		Collectors: a.set.collectors,
	}
}

// startComponents builds and starts every enabled section component. A
// component that cannot be built (its configuration cannot work) stops the
// start-up; one that cannot start is logged and reported down, and the
// rest of the agent keeps running.
func (a *Agent) startComponents(ctx context.Context, cfg *Config) error {
	for _, f := range component.Factories(component.KindSection) {
		sec := cfg.Sections[f.Name]
		if !f.Enabled(sec) {
			continue
		}
		c, err := f.NewSection(sec, a.host(cfg, f.Name))
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		a.components[f.Name] = c
		up := 1.0
		if err := c.Start(ctx); err != nil {
			up = 0
			a.logger.Error("component failed to start; the rest of the agent keeps running", "component", f.Name, "err", err)
		}
		a.componentUp.WithLabelValues(f.Name).Set(up)
	}
	return nil
}

// reconfigureComponents hands each running component its new section.
// Components that are not Reconfigurable, or that are switched on or off,
// take the change at the next restart, which is logged.
func (a *Agent) reconfigureComponents(ctx context.Context, cfg *Config) error {
	old := a.cfg.Load()
	for _, f := range component.Factories(component.KindSection) {
		sec := cfg.Sections[f.Name]
		c, running := a.components[f.Name]
		wantRunning := f.Enabled(sec)
		if running != wantRunning {
			a.logger.Warn("enabling or disabling a component takes effect at the next restart", "component", f.Name)
			continue
		}
		if !running || sameSection(old, cfg, f.Name) {
			continue
		}
		applied, err := f.Apply(ctx, c, sec)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if !applied {
			a.logger.Warn("this component's settings take effect at the next restart", "component", f.Name)
		}
	}
	return nil
}

func (a *Agent) shutdownAll(ctx context.Context) {
	factories := component.Factories(component.KindSection)
	for i := len(factories) - 1; i >= 0; i-- {
		name := factories[i].Name
		if c, ok := a.components[name]; ok {
			if err := c.Shutdown(ctx); err != nil {
				a.logger.Warn("component shutdown failed", "component", name, "err", err)
			}
			delete(a.components, name)
		}
	}
	a.set.mu.Lock()
	running := a.set.running
	a.set.running = map[string]*runningCollector{}
	a.set.mu.Unlock()
	rcs := make([]*runningCollector, 0, len(running))
	for _, rc := range running {
		rcs = append(rcs, rc)
	}
	a.shutdownCollectors(ctx, rcs)
}

// settings returns what every collector gets from the agent.
func (a *Agent) settings(cfg *Config, logger *slog.Logger) collectors.Settings {
	return collectors.Settings{
		Logger: logger,
		Paths: collectors.Paths{
			ProcFS: cfg.Global.ProcFS,
			SysFS:  cfg.Global.SysFS,
			RootFS: cfg.Global.RootFS,
		},
		NodeName:        nodeName(cfg),
		Events:          a.events,
		Enricher:        &a.enricher,
		ProvideEnricher: a.enricher.Set,
		Traces:          a.pipeline.Traces(),
		Logs:            a.pipeline.Logs(),
	}
}

// nodeName is global.node_name, else $NODE_NAME, else the hostname.
func nodeName(cfg *Config) string {
	if cfg.Global.NodeName != "" {
		return cfg.Global.NodeName
	}
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}
