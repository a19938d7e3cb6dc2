package overhead

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the `overhead:` section.
type Config struct {
	// Enabled runs the governor.
	Enabled bool `yaml:"enabled"`
	// AgentCPU is the agent process's budget in CPU seconds per second
	// (0.05 is 5% of one core); 0 means none.
	AgentCPU float64 `yaml:"agent_cpu"`
	// KernelCPU is the budget of the agent's eBPF programs together, in
	// CPU seconds per second; 0 means none.
	KernelCPU float64 `yaml:"kernel_cpu"`
	// Interval is how often usage is measured and a decision taken.
	Interval time.Duration `yaml:"interval"`
	// KernelWindow is how long, at the end of each interval, the kernel's
	// BPF run-time statistics are enabled to measure the programs (they
	// cost every BPF program on the node two clock reads per run while on).
	KernelWindow time.Duration `yaml:"kernel_window"`
	// RecoverBelow is the share of each budget usage must stay under
	// before a level is recovered.
	RecoverBelow float64 `yaml:"recover_below"`
	// ShedAfter is how many measurements in a row over budget shed a level.
	ShedAfter int `yaml:"shed_after"`
	// RecoverAfter is how many measurements in a row under RecoverBelow
	// recover a level.
	RecoverAfter int `yaml:"recover_after"`
	// MaxLevel is the deepest level shed (1 to 4, see the package doc).
	MaxLevel int `yaml:"max_level"`
}

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		Enabled:      true,
		AgentCPU:     0.25,
		KernelCPU:    0.10,
		Interval:     time.Minute,
		KernelWindow: 5 * time.Second,
		RecoverBelow: 0.5,
		ShedAfter:    1,
		RecoverAfter: 3,
		MaxLevel:     int(MaxLevel),
	}
}

// Policy is the decision's part of the configuration.
func (c *Config) Policy() Policy {
	return Policy{AgentCPU: c.AgentCPU, KernelCPU: c.KernelCPU, RecoverBelow: c.RecoverBelow,
		ShedAfter: c.ShedAfter, RecoverAfter: c.RecoverAfter, MaxLevel: Level(c.MaxLevel)}
}

// fieldErrors returns the problems of each field, by YAML key.
func (c *Config) fieldErrors() map[string]string {
	p := map[string]string{}
	if !(c.AgentCPU >= 0 && c.AgentCPU <= 1024) {
		p["agent_cpu"] = fmt.Sprintf("must be between 0 (no budget) and 1024 CPUs, got %v", c.AgentCPU)
	}
	if !(c.KernelCPU >= 0 && c.KernelCPU <= 1024) {
		p["kernel_cpu"] = fmt.Sprintf("must be between 0 (no budget) and 1024 CPUs, got %v", c.KernelCPU)
	}
	if c.Interval < 100*time.Millisecond || c.Interval > time.Hour {
		p["interval"] = fmt.Sprintf("must be between 100ms and 1h, got %s", c.Interval)
	}
	if c.KernelWindow < 10*time.Millisecond || c.KernelWindow >= c.Interval {
		p["kernel_window"] = fmt.Sprintf("must be at least 10ms and shorter than interval (%s), got %s", c.Interval, c.KernelWindow)
	}
	if !(c.RecoverBelow > 0 && c.RecoverBelow < 1) {
		p["recover_below"] = fmt.Sprintf("must be more than 0 and less than 1, got %v", c.RecoverBelow)
	}
	if c.ShedAfter < 1 || c.ShedAfter > 100 {
		p["shed_after"] = fmt.Sprintf("must be between 1 and 100, got %d", c.ShedAfter)
	}
	if c.RecoverAfter < 1 || c.RecoverAfter > 100 {
		p["recover_after"] = fmt.Sprintf("must be between 1 and 100, got %d", c.RecoverAfter)
	}
	if c.MaxLevel < 1 || c.MaxLevel > int(MaxLevel) {
		p["max_level"] = fmt.Sprintf("must be between 1 and %d, got %d", MaxLevel, c.MaxLevel)
	}
	return p
}

// Validate checks the section; each problem names its field. It reads
// nothing and changes nothing.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	p := c.fieldErrors()
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		errs = append(errs, fmt.Errorf("%s: %s", k, p[k]))
	}
	return errors.Join(errs...)
}

// plainConfig decodes without UnmarshalYAML.
type plainConfig Config

// UnmarshalYAML decodes the section and checks it where the values are,
// so that each problem names its line (file:line: overhead: field: …)
// rather than only the section; unknown keys are refused.
func (c *Config) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a mapping", node.Line)}}
	}
	known := map[string]bool{}
	for _, f := range []string{"enabled", "agent_cpu", "kernel_cpu", "interval", "kernel_window", "recover_below",
		"shed_after", "recover_after", "max_level"} {
		known[f] = true
	}
	lines := map[string]int{}
	var msgs []string
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		if !known[k.Value] {
			msgs = append(msgs, fmt.Sprintf("line %d: %s: unknown field", k.Line, k.Value))
		}
		lines[k.Value] = k.Line
	}
	if len(msgs) > 0 {
		return &yaml.TypeError{Errors: msgs}
	}
	if err := node.Decode((*plainConfig)(c)); err != nil {
		return err
	}
	if !c.Enabled {
		return nil
	}
	p := c.fieldErrors()
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return lines[keys[i]] < lines[keys[j]] || (lines[keys[i]] == lines[keys[j]] && keys[i] < keys[j])
	})
	for _, k := range keys {
		line := lines[k]
		if line == 0 {
			// A default that conflicts with a value set (kernel_window
			// against interval): name the line of what was set.
			line = max(lines["interval"], node.Line)
		}
		msgs = append(msgs, fmt.Sprintf("line %d: %s: %s", line, k, p[k]))
	}
	if len(msgs) > 0 {
		return &yaml.TypeError{Errors: msgs}
	}
	return nil
}
