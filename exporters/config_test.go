package exporters

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/confyaml"
)

func decode(t *testing.T, src string) (*Config, error) {
	t.Helper()
	node, err := confyaml.Parse("vigil.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c := NewConfig()
	c.lookupEnv = func(string) (string, bool) { return "", false }
	if err := confyaml.Decode("vigil.yaml", "exporters", node, c); err != nil {
		return nil, err
	}
	return c, nil
}

func TestConfigDecodeAndDefaults(t *testing.T) {
	c, err := decode(t, `
interval: 5s
resource_attributes: {deployment.environment.name: prod}
targets:
  prometheusremotewrite/prom:
    endpoint: http://prometheus:9090/api/v1/write
    external_labels: {cluster: c1}
    queue: {max_bytes: 8MiB, directory: /var/lib/vigil/queue}
  otlp/central:
    endpoint: collector:4317
    tls: {insecure: true}
    signals: [logs, traces]
`)
	if err != nil {
		t.Fatal(err)
	}
	before := *c.Targets["prometheusremotewrite/prom"]
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, *c.Targets["prometheusremotewrite/prom"]) {
		t.Error("Validate changed the target")
	}
	if c.Interval != 5*time.Second {
		t.Errorf("interval = %s", c.Interval)
	}
	// What runs is the target with its defaults (Start applies them to a
	// copy).
	withDefaults := *c.Targets["prometheusremotewrite/prom"]
	withDefaults.setDefaults(TypePrometheusRemoteWrite)
	rw := &withDefaults
	if rw.Queue.MaxBytes != 8<<20 || rw.Queue.MaxItems != DefaultQueueMaxItems || rw.Queue.Directory != "/var/lib/vigil/queue" {
		t.Errorf("remote write queue = %+v", rw.Queue)
	}
	if strings.Join(rw.Signals, ",") != "metrics" {
		t.Errorf("remote write signals default = %v, want metrics", rw.Signals)
	}
	central := *c.Targets["otlp/central"]
	central.setDefaults(TypeOTLP)
	if got := central.Retry; got.InitialInterval != DefaultInitialInterval || got.MaxInterval != DefaultMaxInterval {
		t.Errorf("retry defaults = %+v", got)
	}
}

func TestConfigUnknownFieldNamesPath(t *testing.T) {
	_, err := decode(t, `
targets:
  otlp/central:
    endpoint: collector:4317
    queue: {max_itemz: 10}
`)
	if err == nil {
		t.Fatal("a typo in a target was accepted")
	}
	for _, want := range []string{"vigil.yaml:5:", "exporters.targets.otlp/central.queue.max_itemz", "unknown field", `did you mean "max_items"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestConfigBadByteSize(t *testing.T) {
	_, err := decode(t, `
targets:
  otlp: {endpoint: "x:1", queue: {max_bytes: lots}}
`)
	if err == nil || !strings.Contains(err.Error(), "lots") {
		t.Fatalf("err = %v, want one naming the bad size", err)
	}
}

func TestConfigValidateNamesEveryProblem(t *testing.T) {
	c, err := decode(t, `
interval: 0s
targets:
  kafka/x: {}
  prometheusremotewrite/a:
    endpoint: prometheus:9090
    signals: [metrics, logs]
  otlp/b:
    protocol: http/xml
    compression: brotli
    signals: [metrics, metrics, profiles]
    retry: {initial_interval: 10s, max_interval: 1s}
    tls: {cert_file: /nonexistent/cert.pem}
  otlphttp/c:
    endpoint: http://c:4318
    protocol: grpc
`)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("an invalid section passed validation")
	}
	for _, want := range []string{
		"interval: must be positive",
		`targets.kafka/x: unknown exporter type "kafka"`,
		"targets.prometheusremotewrite/a.endpoint: must be an http:// or https:// URL",
		`targets.prometheusremotewrite/a.signals[1]: prometheusremotewrite carries only metrics, got "logs"`,
		`targets.otlp/b.protocol: must be grpc, http/protobuf or http/json, got "http/xml"`,
		`targets.otlp/b.compression: must be gzip, zstd, snappy or none, got "brotli"`,
		`targets.otlp/b.signals[1]: "metrics" is listed twice`,
		`targets.otlp/b.signals[2]: unknown signal "profiles"`,
		"targets.otlp/b.retry.max_interval: must be at least initial_interval",
		"targets.otlp/b.tls: cert_file and key_file go together",
		"targets.otlp/b.endpoint: required for metrics (or set OTEL_EXPORTER_OTLP_ENDPOINT",
		"targets.otlphttp/c.protocol: otlphttp cannot use grpc",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation error lacks %q; got:\n%v", want, err)
		}
	}
	// The TLS files are Check's, which reads them; Validate reads nothing.
	if _, err := c.Check(); err == nil || !strings.Contains(err.Error(), "targets.otlp/b.tls.cert_file:") {
		t.Errorf("Check: %v", err)
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestOTLPEnvironmentPrecedence(t *testing.T) {
	c := NewConfig()
	c.lookupEnv = env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":         "http://generic:4317",
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT":    "http://logs-only:4317",
		"OTEL_EXPORTER_OTLP_HEADERS":          "authorization=Bearer%20abc, x-tenant=t1",
		"OTEL_EXPORTER_OTLP_METRICS_HEADERS":  "x-tenant=metrics",
		"OTEL_EXPORTER_OTLP_TIMEOUT":          "2500",
		"OTEL_EXPORTER_OTLP_COMPRESSION":      "none",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":  "http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":  "https://traces.example:4318/custom/v1/traces",
		"OTEL_EXPORTER_OTLP_CERTIFICATE":      "/etc/ca.pem",
		"OTEL_EXPORTER_OTLP_METRICS_INSECURE": "true",
	})
	e := &ExporterConfig{}
	e.setDefaults(TypeOTLP)

	m, err := c.resolveOTLP(TypeOTLP, e, SignalMetrics)
	if err != nil {
		t.Fatal(err)
	}
	if m.Protocol != ProtocolGRPC || m.Endpoint != "http://generic:4317" || !m.TLS.Insecure {
		t.Errorf("metrics: %+v", m)
	}
	if len(m.Headers) != 1 || m.Headers["x-tenant"] != "metrics" {
		t.Errorf("metrics headers = %v (the signal's variable replaces the generic one)", m.Headers)
	}
	if m.Timeout != 2500*time.Millisecond || m.Compression != "none" || m.TLS.CAFile != "/etc/ca.pem" {
		t.Errorf("metrics timeout/compression/ca = %s %s %s", m.Timeout, m.Compression, m.TLS.CAFile)
	}

	l, _ := c.resolveOTLP(TypeOTLP, e, SignalLogs)
	if l.Endpoint != "http://logs-only:4317" || l.Headers["x-tenant"] != "t1" {
		t.Errorf("logs: %+v", l)
	}

	tr, _ := c.resolveOTLP(TypeOTLP, e, SignalTraces)
	if tr.Protocol != ProtocolHTTPProtobuf || tr.SignalURL != "https://traces.example:4318/custom/v1/traces" || tr.Endpoint != "" {
		t.Errorf("traces (HTTP, per-signal URL used as is): %+v", tr)
	}

	// Explicit YAML wins over every variable.
	e2 := &ExporterConfig{Endpoint: "yaml:4317", Timeout: time.Second, Compression: "gzip", Headers: map[string]string{"x-tenant": "yaml"}, Protocol: ProtocolGRPC}
	e2.setDefaults(TypeOTLP)
	y, _ := c.resolveOTLP(TypeOTLP, e2, SignalTraces)
	if y.Endpoint != "yaml:4317" || y.Protocol != ProtocolGRPC || y.Timeout != time.Second || y.Compression != "gzip" || y.Headers["x-tenant"] != "yaml" || y.Headers["authorization"] != "Bearer abc" {
		t.Errorf("YAML precedence: %+v", y)
	}
}

func TestOTLPEnvironmentDefaultsAndErrors(t *testing.T) {
	c := NewConfig()
	c.lookupEnv = env(nil)
	e := &ExporterConfig{Endpoint: "http://c:4318"}
	e.setDefaults(TypeOTLPHTTP)
	s, err := c.resolveOTLP(TypeOTLPHTTP, e, SignalLogs)
	if err != nil {
		t.Fatal(err)
	}
	if s.Protocol != ProtocolHTTPProtobuf || s.Timeout != DefaultTimeout || s.Compression != "gzip" {
		t.Errorf("defaults: %+v", s)
	}
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_TIMEOUT":  "soon",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "udp",
		"OTEL_EXPORTER_OTLP_HEADERS":  "novalue",
		"OTEL_EXPORTER_OTLP_INSECURE": "maybe",
	} {
		c.lookupEnv = env(map[string]string{k: v})
		if _, err := c.resolveOTLP(TypeOTLP, e, SignalLogs); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: err = %v, want one naming the variable", k, v, err)
		}
	}
	// Validate reports a bad variable against the target.
	c.lookupEnv = env(map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})
	c.Targets = map[string]*ExporterConfig{"otlp": {Endpoint: "x:1"}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "targets.otlp: metrics: OTEL_EXPORTER_OTLP_TIMEOUT") {
		t.Errorf("Validate: %v", err)
	}
}
