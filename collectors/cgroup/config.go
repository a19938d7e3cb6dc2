package cgroup

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// DefaultMaxCgroups bounds the number of cgroups reported per scrape when the
// configuration does not say otherwise. A node with 110 pods of a few
// containers each stays well below it.
const DefaultMaxCgroups = 2000

// DefaultMaxFDProcesses bounds the processes whose open file descriptors
// are counted per scrape.
const DefaultMaxFDProcesses = 2000

// Config is the collectors.cgroup section.
type Config struct {
	// MaxCgroups bounds how many cgroups are reported in one scrape; the
	// rest are counted in vigil_cgroup_cgroups_dropped_total. Containers and
	// pods are kept first, then services, then extra paths.
	MaxCgroups int `yaml:"max_cgroups"`
	// Containers reports container cgroups (Kubernetes, containerd, CRI-O,
	// Docker).
	Containers bool `yaml:"containers"`
	// Pods reports the pod-level cgroup of each Kubernetes pod (all of its
	// containers together, with the pod's own limits).
	Pods bool `yaml:"pods"`
	// Services reports systemd services (*.service below system.slice).
	Services bool `yaml:"services"`
	// ExtraPaths are additional cgroup path globs to report, matched with
	// Go's path.Match against the path relative to the hierarchy root, e.g.
	// "/batch.slice/*" or "/machine.slice/*.scope". "*" does not cross "/".
	ExtraPaths []string `yaml:"extra_paths"`
	// MaxFDProcesses bounds how many processes per scrape have their open
	// file descriptors counted and their open-files limit read (for
	// vigil_cgroup_process_open_fds and _max_fds); the rest are counted in
	// vigil_cgroup_fd_processes_skipped_total{reason="budget"}. 0 turns
	// the reading off.
	MaxFDProcesses int `yaml:"max_fd_processes"`
}

// NewConfig returns the default configuration.
func NewConfig() *Config {
	return &Config{MaxCgroups: DefaultMaxCgroups, Containers: true, Pods: true, Services: true, MaxFDProcesses: DefaultMaxFDProcesses}
}

// maxMaxCgroups is a sanity bound: beyond it a scrape would carry millions
// of series, which is a configuration mistake.
const maxMaxCgroups = 100000

// Validate reports every problem in the section, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxCgroups <= 0 || c.MaxCgroups > maxMaxCgroups {
		errs = append(errs, fmt.Errorf("max_cgroups: must be between 1 and %d, got %d", maxMaxCgroups, c.MaxCgroups))
	}
	if c.MaxFDProcesses < 0 || c.MaxFDProcesses > maxMaxCgroups {
		errs = append(errs, fmt.Errorf("max_fd_processes: must be between 0 (off) and %d, got %d", maxMaxCgroups, c.MaxFDProcesses))
	}
	for i, p := range c.ExtraPaths {
		switch {
		case !strings.HasPrefix(p, "/"):
			errs = append(errs, fmt.Errorf("extra_paths[%d]: %q must start with \"/\" (paths are relative to the cgroup hierarchy root)", i, p))
		default:
			if _, err := path.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("extra_paths[%d]: %q: %w", i, p, err))
			}
		}
	}
	return errors.Join(errs...)
}
