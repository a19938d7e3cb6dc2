package exporters

import (
	"context"

	"github.com/vigil-agent/vigil/component"
)

// The "exporters" section: OTLP and Prometheus remote write targets, fed
// with the agent's gathered metrics and the collectors' spans and log
// records. See docs/otel.md.
func init() {
	component.RegisterSection("exporters", NewConfig, (*Config).Enabled, newComponent)
}

func newComponent(cfg *Config, h *component.Host) (*running, error) {
	x, err := New(cfg, Settings{
		Logger:     h.Logger,
		NodeName:   h.NodeName,
		Registerer: h.Registry,
		Gatherer:   h.Gatherer,
	})
	if err != nil {
		return nil, err
	}
	return &running{x: x, pipeline: h.Pipeline}, nil
}

// running connects the exporters to the span and log pipeline while they
// run.
type running struct {
	x        *Exporters
	pipeline *component.Pipeline
	remove   []func()
}

func (c *running) Start(ctx context.Context) error {
	err := c.x.Start(ctx)
	if c.remove == nil {
		c.remove = []func(){c.pipeline.AddTraces(c.x.Traces()), c.pipeline.AddLogs(c.x.Logs())}
	}
	return err
}

func (c *running) Shutdown(ctx context.Context) error {
	for _, r := range c.remove {
		r()
	}
	c.remove = nil
	return c.x.Shutdown(ctx)
}

func (c *running) ApplyConfig(ctx context.Context, cfg *Config) error {
	return c.x.ApplyConfig(ctx, cfg)
}
