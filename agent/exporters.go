package agent

import (
	"context"
	"fmt"

	"github.com/vigil-agent/vigil/agent/exporters"
)

// The "exporters" section: OTLP and Prometheus remote write targets, fed
// with the agent's gathered metrics and the collectors' spans and log
// records. See docs/otel.md.
func init() {
	RegisterSection(SectionFactory{
		Name:      "exporters",
		NewConfig: func() SectionConfig { return exporters.NewConfig() },
		Enabled:   func(cfg SectionConfig) bool { return cfg.(*exporters.Config).Enabled() },
		New: func(cfg SectionConfig, h *Host) (Component, error) {
			x, err := exporters.New(cfg.(*exporters.Config), exporters.Settings{
				Logger:     h.Logger,
				NodeName:   h.NodeName,
				Registerer: h.Registry,
				Gatherer:   h.Gatherer,
			})
			if err != nil {
				return nil, err
			}
			return &exportersComponent{x: x, pipeline: h.Pipeline}, nil
		},
	})
}

// exportersComponent connects the exporters to the span and log pipeline
// while they run.
type exportersComponent struct {
	x        *exporters.Exporters
	pipeline *Pipeline
	remove   []func()
}

func (c *exportersComponent) Start(ctx context.Context) error {
	err := c.x.Start(ctx)
	if c.remove == nil {
		c.remove = []func(){c.pipeline.AddTraces(c.x.Traces()), c.pipeline.AddLogs(c.x.Logs())}
	}
	return err
}

func (c *exportersComponent) Shutdown(ctx context.Context) error {
	for _, r := range c.remove {
		r()
	}
	c.remove = nil
	return c.x.Shutdown(ctx)
}

func (c *exportersComponent) ApplyConfig(ctx context.Context, cfg SectionConfig) error {
	ec, ok := cfg.(*exporters.Config)
	if !ok {
		return fmt.Errorf("exporters: unexpected configuration type %T", cfg)
	}
	return c.x.ApplyConfig(ctx, ec)
}
