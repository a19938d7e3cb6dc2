package agent

import (
	"context"
	"fmt"

	"github.com/vigil-agent/vigil/rules"
)

// The `rules:` section: the rules engine (local TSDB and rule evaluation,
// Alertmanager webhook, fast-path event alerts).
func init() {
	RegisterSection(SectionFactory{
		Name:      "rules",
		NewConfig: func() SectionConfig { return rules.NewConfig() },
		Enabled:   func(cfg SectionConfig) bool { return cfg.(*rules.Config).Enabled },
		New: func(cfg SectionConfig, h *Host) (Component, error) {
			e, err := rules.NewEngine(cfg.(*rules.Config), rules.Options{
				Logger:     h.Logger,
				Registerer: h.Registry,
				Gatherer:   h.Gatherer,
				Events:     h.Events,
				Alerts:     h.Alerts,
				Handle:     h.Handle,
			})
			if err != nil {
				return nil, err
			}
			return rulesComponent{e}, nil
		},
	})
}

// rulesComponent adapts the engine's ApplyConfig to SectionConfig.
type rulesComponent struct{ *rules.Engine }

func (c rulesComponent) ApplyConfig(ctx context.Context, cfg SectionConfig) error {
	rc, ok := cfg.(*rules.Config)
	if !ok {
		return fmt.Errorf("rules: unexpected configuration type %T", cfg)
	}
	return c.Engine.ApplyConfig(ctx, rc)
}
