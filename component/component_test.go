package component

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
)

type testConfig struct{ N int }

func (c *testConfig) Validate() error {
	if c.N < 0 {
		return errors.New("n: must not be negative")
	}
	return nil
}

type testCollector struct{ n int }

func (testCollector) Update(context.Context, chan<- prometheus.Metric) error { return nil }

type testSection struct{ applied []int }

func (*testSection) Start(context.Context) error    { return nil }
func (*testSection) Shutdown(context.Context) error { return nil }
func (s *testSection) ApplyConfig(_ context.Context, c *testConfig) error {
	s.applied = append(s.applied, c.N)
	return nil
}

type fixedSection struct{}

func (fixedSection) Start(context.Context) error    { return nil }
func (fixedSection) Shutdown(context.Context) error { return nil }

// A collector and a section register with their own types; the registry
// builds them from its untyped Config and hands a reload to the typed
// ApplyConfig, or says it cannot.
func TestRegisterAndBuild(t *testing.T) {
	RegisterCollector("test_c", true, func() *testConfig { return &testConfig{N: 1} },
		func(c *testConfig, _ collectors.Settings) (testCollector, error) { return testCollector{c.N}, nil })
	RegisterSection("test_s", func() *testConfig { return &testConfig{} }, func(c *testConfig) bool { return c.N > 0 },
		func(*testConfig, *Host) (*testSection, error) { return &testSection{}, nil })
	RegisterSection("test_fixed", func() *testConfig { return &testConfig{} }, nil,
		func(*testConfig, *Host) (fixedSection, error) { return fixedSection{}, nil })

	f, ok := Lookup(KindCollector, "test_c")
	if !ok || !f.DefaultEnabled {
		t.Fatalf("collector: %+v, %v", f, ok)
	}
	c, err := f.NewCollector(f.NewConfig(), collectors.Settings{})
	if err != nil || c.(testCollector).n != 1 {
		t.Fatalf("NewCollector: %v, %v", c, err)
	}
	if _, err := f.NewSection(f.NewConfig(), &Host{}); err == nil {
		t.Error("a collector built as a section")
	}

	s, _ := Lookup(KindSection, "test_s")
	if s.Enabled(&testConfig{N: 0}) || !s.Enabled(&testConfig{N: 2}) {
		t.Error("Enabled does not follow the section")
	}
	comp, err := s.NewSection(s.NewConfig(), &Host{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Apply(t.Context(), comp, &testConfig{N: 7}); !ok || err != nil || comp.(*testSection).applied[0] != 7 {
		t.Fatalf("Apply: %v, %v, %v", ok, err, comp.(*testSection).applied)
	}
	fixed, _ := Lookup(KindSection, "test_fixed")
	fc, _ := fixed.NewSection(fixed.NewConfig(), &Host{})
	if ok, err := fixed.Apply(t.Context(), fc, &testConfig{}); ok || err != nil {
		t.Fatalf("Apply on a component without ApplyConfig: %v, %v", ok, err)
	}
	if !fixed.Enabled(&testConfig{}) {
		t.Error("a section without an enabled func is not always on")
	}
	names := map[string]bool{}
	for _, f := range Factories(KindSection) {
		names[f.Name] = true
	}
	if !names["test_s"] || !names["test_fixed"] || names["test_c"] {
		t.Errorf("Factories(section) = %v", names)
	}
}

// Duplicate and reserved names are programming errors found at start-up.
func TestRegisterRefuses(t *testing.T) {
	mustPanic := func(what, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(string), want) {
				t.Errorf("%s: recovered %v, want %q", what, r, want)
			}
		}()
		f()
	}
	build := func(*testConfig, collectors.Settings) (testCollector, error) { return testCollector{}, nil }
	newCfg := func() *testConfig { return &testConfig{} }
	RegisterCollector("dup", false, newCfg, build)
	mustPanic("duplicate", `duplicate collector "dup"`, func() { RegisterCollector("dup", false, newCfg, build) })
	for _, name := range []string{"global", "server", "log", "collectors", ""} {
		mustPanic("reserved "+name, "", func() {
			RegisterSection(name, newCfg, nil, func(*testConfig, *Host) (fixedSection, error) { return fixedSection{}, nil })
		})
	}
}
