package rules

import "github.com/vigil-agent/vigil/component"

// The rules section: the rules engine (local TSDB and rule evaluation,
// Alertmanager webhook, fast-path event alerts).
func init() {
	component.RegisterSection("rules", NewConfig, func(c *Config) bool { return c.Enabled }, newComponent)
}

func newComponent(cfg *Config, h *component.Host) (*Engine, error) {
	return NewEngine(cfg, Options{
		Logger:        h.Logger,
		Registerer:    h.Registry,
		Gatherer:      h.Gatherer,
		Events:        h.Events,
		Alerts:        h.Alerts,
		Handle:        h.Handle,
		HandleOwnAuth: h.HandleOwnAuth,
	})
}
