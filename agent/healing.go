package agent

import (
	"context"

	"github.com/vigil-agent/vigil/healing"
)

// The healing section: the remediation engine. It subscribes to the alert
// stream, serves /api/v1/actions (and the authenticated pause, resume and
// approve endpoints) and sends one span per decision down the pipeline.
func init() {
	RegisterSection(SectionFactory{
		Name:      "healing",
		NewConfig: func() SectionConfig { return healing.NewConfig() },
		Enabled:   func(cfg SectionConfig) bool { return cfg.(*healing.Config).Enabled },
		New: func(cfg SectionConfig, h *Host) (Component, error) {
			e, err := healing.New(cfg.(*healing.Config), healing.Options{
				Logger:     h.Logger,
				NodeName:   h.NodeName,
				Registerer: h.Registry,
				Alerts:     h.Alerts,
				Traces:     h.Pipeline.Traces(),
			})
			if err != nil {
				return nil, err
			}
			e.Routes(h.Handle)
			return healingComponent{e}, nil
		},
	})
}

type healingComponent struct{ *healing.Engine }

func (c healingComponent) ApplyConfig(ctx context.Context, cfg SectionConfig) error {
	return c.Engine.ApplyConfig(ctx, cfg)
}
