package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// OTelCollector is an OpenTelemetry Collector (built from tools/otelcol)
// started by [StartOTelCollector]. It receives OTLP over gRPC and HTTP and
// writes traces, metrics and logs as OTLP JSON lines to one file each.
type OTelCollector struct {
	// GRPCEndpoint is the OTLP/gRPC endpoint, 127.0.0.1:<port> (insecure).
	GRPCEndpoint string
	// HTTPURL is the OTLP/HTTP base URL, http://127.0.0.1:<port>; signals go
	// to /v1/traces, /v1/metrics and /v1/logs under it.
	HTTPURL string
	// TracesFile, MetricsFile and LogsFile are the file exporter's outputs.
	TracesFile, MetricsFile, LogsFile string
	// ConfigFile is the path of the collector's configuration.
	ConfigFile string
	// Process is the collector process; Stop, Start and Restart keep the
	// ports and the output files.
	*Process
}

// StartOTelCollector starts the collector and waits until both OTLP
// receivers accept connections.
func StartOTelCollector(t TB) *OTelCollector {
	t.Helper()
	bin := Binary(t, "otelcol")
	dir := t.TempDir()
	ports := freePorts(t, 2)
	c := &OTelCollector{
		GRPCEndpoint: hostPort(ports[0]),
		HTTPURL:      "http://" + hostPort(ports[1]),
		TracesFile:   filepath.Join(dir, "traces.jsonl"),
		MetricsFile:  filepath.Join(dir, "metrics.jsonl"),
		LogsFile:     filepath.Join(dir, "logs.jsonl"),
	}
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %q
      http:
        endpoint: %q
exporters:
  debug:
    verbosity: basic
  file/traces:
    path: %q
    flush_interval: 100ms
  file/metrics:
    path: %q
    flush_interval: 100ms
  file/logs:
    path: %q
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces, debug]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics, debug]
    logs:
      receivers: [otlp]
      exporters: [file/logs, debug]
`, c.GRPCEndpoint, hostPort(ports[1]), c.TracesFile, c.MetricsFile, c.LogsFile)
	c.ConfigFile = writeFile(t, dir, "otelcol.yaml", cfg)
	grpcReady, httpReady := TCPReady(c.GRPCEndpoint), TCPReady(hostPort(ports[1]))
	c.Process = StartProcess(t, Command{
		Name: "otelcol",
		Path: bin,
		Args: []string{"--config=" + c.ConfigFile},
		Ready: func(ctx context.Context) error {
			if err := grpcReady(ctx); err != nil {
				return err
			}
			return httpReady(ctx)
		},
	})
	return c
}

// OTLPSpan is a span read back from the collector's traces file.
type OTLPSpan struct {
	Name, TraceID, SpanID, ParentSpanID string
	// Kind is the OTLP span kind number (1 internal, 2 server, 3 client, …).
	Kind int
	// Attributes and Resource map attribute keys to their values (string,
	// int64 as string, float64, bool, or decoded JSON for arrays and maps).
	Attributes, Resource map[string]any
}

// OTLPLogRecord is a log record read back from the collector's logs file.
type OTLPLogRecord struct {
	// Body is the record's body value (a string for text bodies).
	Body         any
	SeverityText string
	Attributes   map[string]any
	Resource     map[string]any
}

// OTLPMetric is a metric read back from the collector's metrics file.
type OTLPMetric struct {
	Name, Unit string
	Resource   map[string]any
	// Data is the metric's JSON without name, unit and description (one of
	// gauge, sum, histogram, … with its data points).
	Data map[string]any
}

// Spans reads every span written so far.
func (c *OTelCollector) Spans() ([]OTLPSpan, error) {
	var out []OTLPSpan
	err := readJSONLines(c.TracesFile, func(line []byte) error {
		var req struct {
			ResourceSpans []struct {
				Resource   otlpResource `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						Name         string          `json:"name"`
						TraceID      string          `json:"traceId"`
						SpanID       string          `json:"spanId"`
						ParentSpanID string          `json:"parentSpanId"`
						Kind         int             `json:"kind"`
						Attributes   []otlpAttribute `json:"attributes"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			return err
		}
		for _, rs := range req.ResourceSpans {
			res := attrMap(rs.Resource.Attributes)
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out = append(out, OTLPSpan{
						Name: s.Name, TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
						Kind: s.Kind, Attributes: attrMap(s.Attributes), Resource: res,
					})
				}
			}
		}
		return nil
	})
	return out, err
}

// LogRecords reads every log record written so far.
func (c *OTelCollector) LogRecords() ([]OTLPLogRecord, error) {
	var out []OTLPLogRecord
	err := readJSONLines(c.LogsFile, func(line []byte) error {
		var req struct {
			ResourceLogs []struct {
				Resource  otlpResource `json:"resource"`
				ScopeLogs []struct {
					LogRecords []struct {
						Body         otlpValue       `json:"body"`
						SeverityText string          `json:"severityText"`
						Attributes   []otlpAttribute `json:"attributes"`
					} `json:"logRecords"`
				} `json:"scopeLogs"`
			} `json:"resourceLogs"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			return err
		}
		for _, rl := range req.ResourceLogs {
			res := attrMap(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					out = append(out, OTLPLogRecord{
						Body: r.Body.value(), SeverityText: r.SeverityText,
						Attributes: attrMap(r.Attributes), Resource: res,
					})
				}
			}
		}
		return nil
	})
	return out, err
}

// Metrics reads every metric written so far (one entry per metric per
// export).
func (c *OTelCollector) Metrics() ([]OTLPMetric, error) {
	var out []OTLPMetric
	err := readJSONLines(c.MetricsFile, func(line []byte) error {
		var req struct {
			ResourceMetrics []struct {
				Resource     otlpResource `json:"resource"`
				ScopeMetrics []struct {
					Metrics []map[string]any `json:"metrics"`
				} `json:"scopeMetrics"`
			} `json:"resourceMetrics"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			return err
		}
		for _, rm := range req.ResourceMetrics {
			res := attrMap(rm.Resource.Attributes)
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					name, _ := m["name"].(string)
					unit, _ := m["unit"].(string)
					delete(m, "name")
					delete(m, "unit")
					delete(m, "description")
					out = append(out, OTLPMetric{Name: name, Unit: unit, Resource: res, Data: m})
				}
			}
		}
		return nil
	})
	return out, err
}

type otlpResource struct {
	Attributes []otlpAttribute `json:"attributes"`
}

type otlpAttribute struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

// otlpValue is OTLP JSON's AnyValue: exactly one field is set.
type otlpValue struct {
	StringValue *string          `json:"stringValue"`
	IntValue    *string          `json:"intValue"`
	DoubleValue *float64         `json:"doubleValue"`
	BoolValue   *bool            `json:"boolValue"`
	ArrayValue  *json.RawMessage `json:"arrayValue"`
	KvlistValue *json.RawMessage `json:"kvlistValue"`
	BytesValue  *string          `json:"bytesValue"`
}

func (v otlpValue) value() any {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return *v.IntValue
	case v.DoubleValue != nil:
		return *v.DoubleValue
	case v.BoolValue != nil:
		return *v.BoolValue
	case v.BytesValue != nil:
		return *v.BytesValue
	case v.ArrayValue != nil:
		var a any
		_ = json.Unmarshal(*v.ArrayValue, &a)
		return a
	case v.KvlistValue != nil:
		var m any
		_ = json.Unmarshal(*v.KvlistValue, &m)
		return m
	}
	return nil
}

func attrMap(attrs []otlpAttribute) map[string]any {
	m := make(map[string]any, len(attrs))
	for _, a := range attrs {
		m[a.Key] = a.Value.value()
	}
	return m
}

// readJSONLines calls fn for each non-empty line of path; a missing file has
// no lines. A last line without its newline may still be being written and
// is left out.
func readJSONLines(path string, fn func([]byte) error) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return sc.Err()
}
