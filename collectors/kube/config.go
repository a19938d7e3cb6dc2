package kube

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Config is the collectors.kube section.
type Config struct {
	// Kubeconfig is a kubeconfig file to reach the API server with. Empty
	// means the in-cluster configuration (the pod's ServiceAccount token and
	// KUBERNETES_SERVICE_HOST/PORT).
	Kubeconfig string `yaml:"kubeconfig"`
	// NodeName is the node whose pods are watched. Empty means
	// global.node_name ($NODE_NAME, then the hostname). It must be the
	// Kubernetes node name exactly, since it is matched against the pods'
	// spec.nodeName.
	NodeName string `yaml:"node_name"`
	// Namespaces limits the watch to these namespaces (one informer each),
	// for an agent whose RBAC is granted per namespace (Helm
	// rbac.scope=namespaces). Empty means every namespace.
	Namespaces []string `yaml:"namespaces"`
	// SyncTimeout bounds how long Start waits for the first list of pods and
	// ReplicaSets; past it the collector is reported down.
	SyncTimeout time.Duration `yaml:"sync_timeout"`
	// ResyncPeriod re-delivers every cached object to the index this often
	// (0 disables it; the watch keeps the cache current either way).
	ResyncPeriod time.Duration `yaml:"resync_period"`
	// QPS and Burst bound the client's request rate to the API server. After
	// the initial lists the collector only keeps two watches open.
	QPS   float32 `yaml:"qps"`
	Burst int     `yaml:"burst"`
}

// NewConfig returns the default configuration.
func NewConfig() *Config {
	return &Config{SyncTimeout: time.Minute, QPS: 5, Burst: 10}
}

// Validate reports every problem in the section, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, ns := range c.Namespaces {
		switch {
		case ns == "":
			errs = append(errs, fmt.Errorf("namespaces[%d]: must not be empty", i))
		case seen[ns]:
			errs = append(errs, fmt.Errorf("namespaces[%d]: %q is listed twice", i, ns))
		}
		seen[ns] = true
	}
	if c.SyncTimeout <= 0 {
		errs = append(errs, fmt.Errorf("sync_timeout: must be positive, got %s", c.SyncTimeout))
	}
	if c.ResyncPeriod < 0 {
		errs = append(errs, fmt.Errorf("resync_period: must not be negative, got %s", c.ResyncPeriod))
	}
	if c.QPS <= 0 {
		errs = append(errs, fmt.Errorf("qps: must be positive, got %g", c.QPS))
	}
	if c.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst: must be at least 1, got %d", c.Burst))
	}
	return errors.Join(errs...)
}

// Check implements component.Checker: the kubeconfig, when one is named,
// must be there (New reads it).
func (c *Config) Check() (string, error) {
	if c.Kubeconfig == "" {
		return "", nil
	}
	if _, err := os.Stat(c.Kubeconfig); err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return "", nil
}
