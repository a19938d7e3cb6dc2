package overhead

import "github.com/vigil-agent/vigil/component"

// The `overhead:` section: the governor sheds load through the running
// collectors that implement Shedder and measures those that implement
// KernelCoster (the eBPF collector).
func init() {
	component.RegisterSection("overhead", NewConfig, func(c *Config) bool { return c.Enabled }, newComponent)
}

func newComponent(cfg *Config, h *component.Host) (*Governor, error) {
	return New(cfg, Options{
		Logger:     h.Logger,
		Registerer: h.Registry,
		Parts: func() []any {
			if h.Collectors == nil {
				return nil
			}
			cs := h.Collectors()
			out := make([]any, len(cs))
			for i, c := range cs {
				out[i] = c
			}
			return out
		},
	})
}
