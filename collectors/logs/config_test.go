package logs

import (
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/internal/confyaml"
)

func decode(t *testing.T, y string) (*Config, error) {
	t.Helper()
	node, err := confyaml.Parse("vigil.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	if err := confyaml.Decode("vigil.yaml", "collectors.logs", node, cfg); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func TestConfigDefaultsAreValid(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDecode(t *testing.T) {
	cfg, err := decode(t, `
inputs:
  - paths: [/var/log/app/*.log]
    format: plain
    labels: {job: app}
    multiline: {start: '^\d{4}-', timeout: 2s}
loki:
  url: http://loki:3100/loki/api/v1/push
  tenant_id: t1
  batch_wait: 2s
  basic_auth: {username: u, password_file: /etc/vigil/loki-pass}
  buffer: {dir: /var/lib/vigil/b, max_bytes: 100000000}
patterns:
  - {name: oom, literal: OutOfMemoryError}
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Loki.HTTP.BasicAuth == nil || cfg.Loki.HTTP.BasicAuth.Username != "u" || cfg.Loki.BatchWait.Seconds() != 2 ||
		cfg.Inputs[0].Multiline.Timeout.Seconds() != 2 || cfg.Loki.Buffer.SegmentBytes != 8<<20 {
		t.Errorf("decoded %+v", *cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := decode(t, "loki:\n  urll: http://x\n")
	if err == nil || !strings.Contains(err.Error(), "collectors.logs.loki.urll") || !strings.Contains(err.Error(), "vigil.yaml:2") {
		t.Errorf("typo: %v", err)
	}
	_, err = decode(t, `
inputs:
  - paths: [relative/*.log]
    format: json
max_line_bytes: 10
loki: {url: "ftp://x", max_backoff: 1ms}
patterns:
  - {name: a, regex: "(", literal: x}
  - {name: a, regex: "("}
  - {name: b, literal: x, labels: {pod: x}}
`)
	for _, want := range []string{
		"inputs[0].paths[0]", "inputs[0].format", "max_line_bytes", "loki.url", "loki.max_backoff",
		"patterns[0]: set regex or literal", "patterns[1].name: duplicate", "patterns[1].regex", "patterns[2].labels.pod",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}
