package healing

import (
	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/component"
)

// The healing section: the remediation engine. It subscribes to the alert
// stream, serves /api/v1/actions (and the authenticated pause, resume and
// approve endpoints) and sends one span per decision down the pipeline.
func init() {
	component.RegisterSection("healing", NewConfig, func(c *Config) bool { return c.Enabled }, newComponent)
}

func newComponent(cfg *Config, h *component.Host) (*Engine, error) {
	e, err := New(cfg, Options{
		Logger:     h.Logger,
		NodeName:   h.NodeName,
		Registerer: h.Registry,
		Alerts:     h.Alerts,
		Traces:     h.Pipeline.Traces(),
		// The readiness-gate opener watches the pods of the namespaces
		// the kube collector watches (all unless collectors.kube.namespaces
		// is set, as the chart's rbac.scope=namespaces does).
		PodNamespaces: podNamespaces(h.Collectors),
	})
	if err != nil {
		return nil, err
	}
	e.Routes(h.Handle)
	return e, nil
}

// podNamespaces returns the namespaces a running collector that watches
// pods (the kube collector) is limited to; nil for all, or when none runs.
func podNamespaces(running func() []collectors.Collector) []string {
	if running == nil {
		return nil
	}
	for _, c := range running() {
		if w, ok := c.(interface{ Namespaces() []string }); ok {
			return w.Namespaces()
		}
	}
	return nil
}

// APITokenFile is the file holding the agent's API token
// (healing.auth_token_file): it guards the healing API, /-/reload and,
// with server.require_api_token, every /api/v1/ read.
func (c *Config) APITokenFile() string { return c.AuthTokenFile }
