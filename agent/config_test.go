package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadDefault(t *testing.T) {
	c, err := LoadDefault()
	if err != nil {
		t.Fatalf("embedded default configuration does not load: %v", err)
	}
	if c.Server.ListenAddress != DefaultListenAddress {
		t.Errorf("listen address = %q, want %q", c.Server.ListenAddress, DefaultListenAddress)
	}
	for name := range c.Collectors {
		if c.Collectors[name].Config == nil {
			t.Errorf("collector %s has no configuration", name)
		}
	}
}

func TestLoadReportsFileLineAndPath(t *testing.T) {
	t.Setenv("VIGIL_TEST_SET", "debug")
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"typo in a top-level key", "servr:\n  listen_address: :1\n", []string{"cfg.yaml:1:1:", "servr", "unknown section", "server"}},
		{"typo in a nested key", "server:\n  listen_adress: :1\n", []string{"cfg.yaml:2:3:", "server.listen_adress", "unknown field", `did you mean "listen_address"`}},
		{"wrong type", "server:\n  max_requests: lots\n", []string{"cfg.yaml:2:", "server", "cannot unmarshal", "lots"}},
		{"bad duration", "global:\n  collector_timeout: soon\n", []string{"cfg.yaml:2:", "soon"}},
		{"bad value", "log:\n  level: loud\n", []string{"cfg.yaml", "log.level", "must be debug, info, warn or error", "loud"}},
		{"negative value", "server:\n  max_requests: -1\n", []string{"server.max_requests", "must not be negative"}},
		{"relative path", "global:\n  procfs: proc\n", []string{"global.procfs", "absolute"}},
		{"bad listen address", "server:\n  listen_address: nonsense\n", []string{"server.listen_address", "missing port"}},
		{"unset variable", "global:\n  node_name: ${VIGIL_TEST_UNSET_VAR}\n", []string{"cfg.yaml:2:", "VIGIL_TEST_UNSET_VAR is not set"}},
		{"unknown collector", "collectors:\n  hots: {}\n", []string{"cfg.yaml:2:3:", "collectors.hots", "unknown collector"}},
		{"not a mapping", "- a\n- b\n", []string{"cfg.yaml:1:1:", "must be a YAML mapping"}},
		{"broken yaml", "server: [\n", []string{"cfg.yaml:"}},
		{"several problems at once", "log:\n  level: loud\n  format: xml\n", []string{"log.level", "log.format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("cfg.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Load accepted:\n%s", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadExpandsEnvironment(t *testing.T) {
	t.Setenv("VIGIL_TEST_NODE", "node-7")
	c, err := Load("cfg.yaml", []byte("global:\n  node_name: ${VIGIL_TEST_NODE}\nlog:\n  level: ${VIGIL_TEST_LEVEL_UNSET:-warn}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Global.NodeName != "node-7" {
		t.Errorf("node_name = %q, want node-7", c.Global.NodeName)
	}
	if c.Log.Level != "warn" {
		t.Errorf("level = %q, want the default warn", c.Log.Level)
	}
}

func TestLoadFileNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vigil.yml")
	if err := os.WriteFile(p, []byte("log:\n  levle: info\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(p)
	if err == nil || !strings.Contains(err.Error(), p+":2:3: log.levle: unknown field") {
		t.Fatalf("error = %v, want it to name %s:2:3 and the field", err, p)
	}
}

func TestCollectorSectionEnabledSwitch(t *testing.T) {
	c, err := Load("cfg.yaml", []byte("collectors:\n  test_ok:\n    enabled: true\n    value: 3\n  test_fail: {enabled: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Collectors["test_ok"].Enabled || c.Collectors["test_ok"].Config.(*testConfig).Value != 3 {
		t.Errorf("test_ok = %+v", c.Collectors["test_ok"])
	}
	if c.Collectors["test_fail"].Enabled {
		t.Error("test_fail should be disabled")
	}
	if _, err := Load("cfg.yaml", []byte("collectors:\n  test_ok:\n    valu: 3\n")); err == nil || !strings.Contains(err.Error(), "cfg.yaml:3:5: collectors.test_ok.valu: unknown field") {
		t.Errorf("typo in a collector section: err = %v", err)
	}
	if _, err := Load("cfg.yaml", []byte("collectors:\n  test_ok:\n    value: -1\n")); err == nil || !strings.Contains(err.Error(), "collectors.test_ok: value must not be negative") {
		t.Errorf("invalid collector section: err = %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("global:\n  node_name: a\nserver:\n  listen_address: :1\n"))
	f.Add([]byte("collectors:\n  test_ok:\n    value: 1\n"))
	f.Add([]byte("log: {level: debug, format: json}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add(DefaultConfigYAML)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("Load returned a configuration together with an error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a configuration that does not validate: %v", err)
		}
	})
}

func TestEveryProblemNamesItsSection(t *testing.T) {
	_, err := Load("cfg.yaml", []byte("collectors:\n  test_ok:\n    value: -1\n  test_fail:\n    value: -2\n"))
	if err == nil {
		t.Fatal("accepted negative values")
	}
	for _, want := range []string{"collectors.test_ok: value must not be negative", "collectors.test_fail: value must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
