// Package healing is Vigil's remediation engine: it matches alerts from
// the alert stream against a tree of policies, passes each action through
// guards (dry-run, cooldown, rate limits, blast radius, circuit breaker,
// rollout, maintenance), takes it through a registered actuator, verifies
// that the alert resolves, escalates step by step like a runbook, and
// audits every decision.
package healing

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the healing section of the agent's configuration.
type Config struct {
	// Enabled runs the engine (default true: in dry-run it only records).
	Enabled bool `yaml:"enabled"`
	// DryRun records every decision without acting (default true). Turn
	// it off only after reading the dry-run records.
	DryRun bool `yaml:"dry_run"`
	// PolicyFile is a policy file; Policies is the same root route inline.
	// At most one of them may be set.
	PolicyFile string    `yaml:"policy_file"`
	Policies   yaml.Node `yaml:"policies"`
	// NodeRateLimit caps the actions this agent takes across all
	// policies.
	NodeRateLimit *RateLimit `yaml:"node_rate_limit"`
	// MaintenanceFile pauses every action while it exists.
	MaintenanceFile string `yaml:"maintenance_file"`
	// AuthTokenFile holds the bearer token that pause, resume and approve
	// require; without it those endpoints refuse every request.
	AuthTokenFile string `yaml:"auth_token_file"`
	// History is how many records are kept for the guards and the API.
	History int `yaml:"history"`
	// RepeatInterval: after a runbook ends without acting (vetoed,
	// dry-run, skipped), the same alert firing again for the same policy
	// within this interval is not decided again, so an alert re-sent at
	// every evaluation does not flood the records. A runbook vetoed by a
	// guard that may clear (clearingGuards) is decided again by the
	// engine this often while its alert fires. 0 decides every re-sent
	// alert and never decides again by itself.
	RepeatInterval time.Duration `yaml:"repeat_interval"`
	// Identity names this agent in leases and events (default: node name).
	Identity string `yaml:"identity"`
	// Kubernetes configures the Kubernetes actuators.
	Kubernetes KubeConfig `yaml:"kubernetes"`
	// Systemd configures the systemd actuators.
	Systemd SystemdConfig `yaml:"systemd"`
}

// KubeConfig configures access to the Kubernetes API.
type KubeConfig struct {
	// Mode is auto (use the in-cluster configuration or Kubeconfig when
	// available), on, or off.
	Mode string `yaml:"mode"`
	// Kubeconfig is a kubeconfig file; empty means in-cluster.
	Kubeconfig string `yaml:"kubeconfig"`
	// LeaseNamespace holds the per-target Leases (default "vigil").
	LeaseNamespace string `yaml:"lease_namespace"`
	// LeaseDuration is the least time a target's Lease is held after an
	// action (it is also held for the verify window and the cooldown).
	LeaseDuration time.Duration `yaml:"lease_duration"`
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// Retries is how many times a transient API error is retried (with
	// exponential backoff) before the action fails closed.
	Retries int `yaml:"retries"`
	// ReadinessCondition is the pod condition the reroute action owns;
	// pods opt in by listing it in spec.readinessGates.
	ReadinessCondition string `yaml:"readiness_condition"`
	// OpenReadinessGates makes the agent open ReadinessCondition on the
	// new pods of its node that declare it (see gates.go). Off where no
	// pod declares the gate (one pod watch less on the API server) or
	// where something else opens it; gated pods then stay unready until
	// that something does.
	OpenReadinessGates bool `yaml:"open_readiness_gates"`
	// EnrichTimeout bounds the lookups that add owner and dependency
	// labels to an alert before it is matched; on timeout or error the
	// alert is matched without them.
	EnrichTimeout time.Duration `yaml:"enrich_timeout"`
	// EnrichCacheTTL is how long a lookup's answer (found or not) is
	// reused.
	EnrichCacheTTL time.Duration `yaml:"enrich_cache_ttl"`
}

// SystemdConfig configures the systemd actuators.
type SystemdConfig struct {
	// Address is a D-Bus address; empty means systemd's private socket,
	// then the system bus.
	Address string `yaml:"address"`
	// Direct says Address is systemd's private socket (a peer-to-peer
	// connection, no bus daemon); assumed for addresses ending in
	// /systemd/private.
	Direct bool `yaml:"direct"`
}

// DefaultReadinessCondition is the readiness gate condition type that
// reroute sets to False.
const DefaultReadinessCondition = "vigil.dev/healthy"

// NewConfig returns the defaults: enabled, dry-run, no policies.
func NewConfig() *Config {
	return &Config{
		Enabled:         true,
		DryRun:          true,
		MaintenanceFile: "/etc/vigil/maintenance",
		History:         1000,
		RepeatInterval:  time.Minute,
		Kubernetes: KubeConfig{
			Mode:               "auto",
			LeaseNamespace:     "vigil",
			LeaseDuration:      time.Minute,
			RequestTimeout:     10 * time.Second,
			Retries:            3,
			ReadinessCondition: DefaultReadinessCondition,
			OpenReadinessGates: true,
			EnrichTimeout:      2 * time.Second,
			EnrichCacheTTL:     30 * time.Second,
		},
	}
}

// Validate checks the section, including the policies, and returns every
// problem.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.PolicyFile != "" && c.Policies.Kind != 0 {
		add("policy_file", "set policy_file or policies, not both")
	}
	if c.NodeRateLimit != nil && (c.NodeRateLimit.Max < 1 || c.NodeRateLimit.Per <= 0) {
		add("node_rate_limit", "max must be at least 1 and per positive")
	}
	if c.RepeatInterval < 0 {
		add("repeat_interval", "must not be negative")
	}
	if c.History < 10 {
		add("history", "must be at least 10, got %d", c.History)
	}
	switch c.Kubernetes.Mode {
	case "auto", "on", "off":
	default:
		add("kubernetes.mode", "must be auto, on or off, got %q", c.Kubernetes.Mode)
	}
	if c.Kubernetes.LeaseNamespace == "" {
		add("kubernetes.lease_namespace", "must not be empty")
	}
	if c.Kubernetes.LeaseDuration < time.Second {
		add("kubernetes.lease_duration", "must be at least 1s")
	}
	if c.Kubernetes.RequestTimeout <= 0 {
		add("kubernetes.request_timeout", "must be positive")
	}
	if c.Kubernetes.Retries < 0 || c.Kubernetes.Retries > 10 {
		add("kubernetes.retries", "must be between 0 and 10, got %d", c.Kubernetes.Retries)
	}
	if c.Kubernetes.EnrichTimeout <= 0 {
		add("kubernetes.enrich_timeout", "must be positive")
	}
	if c.Kubernetes.EnrichCacheTTL < 0 {
		add("kubernetes.enrich_cache_ttl", "must not be negative")
	}
	if c.Kubernetes.ReadinessCondition == "" {
		add("kubernetes.readiness_condition", "must not be empty")
	}
	return errors.Join(errs...)
}

// Check implements component.Checker: it loads and compiles the policies
// (policy_file or the inline ones) as New and ApplyConfig will, and
// returns a digest of the policy file, so that a reload sees its content
// change.
func (c *Config) Check() (string, error) {
	if !c.Enabled {
		return "", nil
	}
	if _, err := c.LoadPolicies(); err != nil {
		return "", err
	}
	if c.PolicyFile == "" {
		return "", nil
	}
	data, err := os.ReadFile(c.PolicyFile)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", sha256.Sum256(data)), nil
}

// LoadPolicies compiles the policies from policy_file or the inline
// section.
func (c *Config) LoadPolicies() (*Tree, error) {
	if c.PolicyFile != "" {
		return LoadPolicyFile(c.PolicyFile)
	}
	return CompilePolicies("", "policies", &c.Policies)
}
