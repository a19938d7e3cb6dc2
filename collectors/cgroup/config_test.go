package cgroup

import (
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/agent"
)

func TestConfigDefaults(t *testing.T) {
	c := NewConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if c.MaxCgroups != DefaultMaxCgroups || c.MaxFDProcesses != DefaultMaxFDProcesses || !c.Containers || !c.Pods || !c.Services || len(c.ExtraPaths) != 0 {
		t.Errorf("unexpected defaults: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	c := &Config{MaxCgroups: 0, MaxFDProcesses: -1, ExtraPaths: []string{"/ok/*", "relative/*", "/bad/[x"}}
	err := c.Validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"max_cgroups: must be between 1 and", "max_fd_processes: must be between 0 (off) and", "extra_paths[1]:", "must start with", "extra_paths[2]:", "syntax error in pattern"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "extra_paths[0]") {
		t.Errorf("valid glob reported: %v", err)
	}
}

// The section is decoded by the agent like a user's file: defaults kept,
// values applied, typos and bad values rejected with file, line and field.
func TestConfigThroughAgent(t *testing.T) {
	cfg, err := agent.Load("vigil.yaml", []byte("collectors:\n  cgroup:\n    max_cgroups: 50\n    extra_paths: [\"/batch.slice/*\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	sec := cfg.Collectors["cgroup"]
	if sec == nil || !sec.Enabled {
		t.Fatalf("cgroup collector not enabled by default: %+v", sec)
	}
	got := sec.Config.(*Config)
	if got.MaxCgroups != 50 || !got.Containers || len(got.ExtraPaths) != 1 {
		t.Errorf("decoded %+v", got)
	}

	_, err = agent.Load("vigil.yaml", []byte("collectors:\n  cgroup:\n    max_cgroup: 50\n"))
	if err == nil || !strings.Contains(err.Error(), "vigil.yaml:3") || !strings.Contains(err.Error(), "max_cgroup") {
		t.Errorf("typo: got %v", err)
	}
	_, err = agent.Load("vigil.yaml", []byte("collectors:\n  cgroup:\n    max_cgroups: -1\n"))
	if err == nil || !strings.Contains(err.Error(), "collectors.cgroup") || !strings.Contains(err.Error(), "max_cgroups") {
		t.Errorf("bad value: got %v", err)
	}
}
