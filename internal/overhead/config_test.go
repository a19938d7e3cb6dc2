package overhead

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/confyaml"
)

func decode(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	root, err := confyaml.Parse("vigil.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	// The section's value, as the agent hands it over.
	return cfg, confyaml.Decode("vigil.yaml", "overhead", root.Content[1], cfg)
}

func TestConfigDefaultsAreValid(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDecodes(t *testing.T) {
	cfg, err := decode(t, `overhead:
  agent_cpu: 0.02
  kernel_cpu: 0
  interval: 30s
  kernel_window: 2s
  recover_after: 5
`)
	if err != nil {
		t.Fatal(err)
	}
	want := NewConfig()
	want.AgentCPU, want.KernelCPU, want.Interval, want.KernelWindow, want.RecoverAfter = 0.02, 0, 30*time.Second, 2*time.Second, 5
	if *cfg != *want {
		t.Fatalf("decoded %+v, want %+v", *cfg, *want)
	}
}

// TestConfigErrorsNameTheLine: every bad value is reported at once, each
// with the file, its line and the field.
func TestConfigErrorsNameTheLine(t *testing.T) {
	_, err := decode(t, `overhead:
  agent_cpu: -1
  interval: 10s
  kernel_window: 10s
  recover_below: 1.5
  max_level: 9
  shed_afterr: 2
`)
	if err == nil {
		t.Fatal("no error")
	}
	// An unknown key is reported first, alone (the values are not checked
	// against a misspelt section).
	if got := err.Error(); !strings.Contains(got, "vigil.yaml:7:") || !strings.Contains(got, "shed_afterr: unknown field") {
		t.Fatalf("error %q does not name line 7's unknown field", got)
	}
	_, err = decode(t, `overhead:
  agent_cpu: -1
  interval: 10s
  kernel_window: 10s
  recover_below: 1.5
  max_level: 9
`)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"vigil.yaml:2: overhead: agent_cpu: must be between 0",
		"vigil.yaml:4: overhead: kernel_window: must be at least 10ms and shorter than interval (10s)",
		"vigil.yaml:5: overhead: recover_below: must be more than 0 and less than 1",
		"vigil.yaml:6: overhead: max_level: must be between 1 and 4",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	// A disabled governor is not checked further.
	if _, err := decode(t, "overhead:\n  enabled: false\n  agent_cpu: -1\n"); err != nil {
		t.Errorf("disabled section: %v", err)
	}
}

func TestConfigValidateNamesFields(t *testing.T) {
	cfg := NewConfig()
	cfg.ShedAfter, cfg.KernelCPU = 0, -0.5
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "kernel_cpu: must be between 0") || !strings.Contains(err.Error(), "shed_after: must be between 1 and 100") {
		t.Fatalf("Validate: %v", err)
	}
}
