package exporters

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"go.yaml.in/yaml/v3"
)

// Exporter types, the part of a target's name before the slash.
const (
	// TypeOTLP sends OTLP over gRPC, or over HTTP when protocol (or
	// OTEL_EXPORTER_OTLP_PROTOCOL) says http/protobuf or http/json.
	TypeOTLP = "otlp"
	// TypeOTLPHTTP sends OTLP over HTTP (protobuf unless protocol says
	// http/json).
	TypeOTLPHTTP = "otlphttp"
	// TypePrometheusRemoteWrite sends metrics with Prometheus remote write 1.0.
	TypePrometheusRemoteWrite = "prometheusremotewrite"
)

// Signal names, as used in the signals list and the signal label.
const (
	SignalMetrics = "metrics"
	SignalLogs    = "logs"
	SignalTraces  = "traces"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL spells them.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
	ProtocolHTTPJSON     = "http/json"
)

// Config is the "exporters" section.
type Config struct {
	// Interval is how often the agent's metrics are gathered and handed to
	// the metric exporters.
	Interval time.Duration `yaml:"interval"`
	// ResourceAttributes are added to (and override) the node's resource
	// attributes on every signal, e.g. deployment.environment.name.
	ResourceAttributes map[string]string `yaml:"resource_attributes"`
	// MachineIDFile is read for host.id; in a container mount the host's
	// /etc/machine-id and point here.
	MachineIDFile string `yaml:"machine_id_file"`
	// Targets are the exporters by name: "<type>/<name>" or "<type>", the
	// collector's convention, e.g. "otlp/central",
	// "prometheusremotewrite/prom".
	Targets map[string]*ExporterConfig `yaml:"targets"`

	// lookupEnv reads the environment; nil means os.LookupEnv. Tests set it.
	lookupEnv func(string) (string, bool)
}

// ExporterConfig is one target.
type ExporterConfig struct {
	// Endpoint is host:port or a URL for otlp (gRPC), the base URL for
	// otlphttp (/v1/<signal> is appended), the full write URL for
	// prometheusremotewrite. For OTLP, OTEL_EXPORTER_OTLP_[<SIGNAL>_]ENDPOINT
	// is the default.
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc, http/protobuf or http/json (OTLP only); the default
	// is OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL, then grpc for otlp and
	// http/protobuf for otlphttp.
	Protocol string `yaml:"protocol"`
	// Headers are sent with every request (e.g. Authorization), added to
	// those from OTEL_EXPORTER_OTLP_[<SIGNAL>_]HEADERS; YAML wins per key.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one send attempt; OTEL_EXPORTER_OTLP_[<SIGNAL>_]TIMEOUT
	// (milliseconds) is the default for OTLP, then 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Compression is gzip, zstd, snappy or none; OTLP defaults to
	// OTEL_EXPORTER_OTLP_[<SIGNAL>_]COMPRESSION, then gzip; remote write
	// always uses snappy, as its protocol requires.
	Compression string `yaml:"compression"`
	// TLS configures the client side of TLS.
	TLS TLSConfig `yaml:"tls"`
	// Signals this target receives; the default is every signal its type
	// carries (remote write: metrics only).
	Signals []string `yaml:"signals"`
	// ExternalLabels are added to every series (remote write only).
	ExternalLabels map[string]string `yaml:"external_labels"`
	// Queue bounds what waits for the backend.
	Queue QueueConfig `yaml:"queue"`
	// Retry sets the backoff between attempts.
	Retry RetryConfig `yaml:"retry"`
}

// TLSConfig is the client side of TLS. An http:// endpoint, or insecure,
// means plain text.
type TLSConfig struct {
	// Insecure sends in plain text (gRPC); OTEL_EXPORTER_OTLP_INSECURE is
	// the default.
	Insecure bool `yaml:"insecure"`
	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CAFile verifies the server; OTEL_EXPORTER_OTLP_CERTIFICATE is the
	// default.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate (mutual TLS);
	// OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY are the defaults.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
}

// QueueConfig bounds one target's queue, per signal. When either bound is
// reached the oldest queued requests are dropped and counted in
// vigil_exporter_dropped_total.
type QueueConfig struct {
	// MaxItems is the most samples (metric data points), log records or
	// spans queued.
	MaxItems int64 `yaml:"max_items"`
	// MaxBytes is the most encoded bytes queued (e.g. 64MiB).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// Directory makes the queue persistent: it is kept there (one bbolt file
	// per target and signal, through the collector's filestorage extension)
	// and survives restarts. Empty means in memory.
	Directory string `yaml:"directory"`
}

// RetryConfig is the exponential backoff between failed attempts. Failed
// requests are retried until they are sent or pushed out of the queue by
// newer data; a request the backend rejects as malformed (HTTP 4xx other
// than 429, gRPC InvalidArgument…) is dropped at once.
type RetryConfig struct {
	// InitialInterval is the wait after the first failure.
	InitialInterval time.Duration `yaml:"initial_interval"`
	// MaxInterval caps the wait.
	MaxInterval time.Duration `yaml:"max_interval"`
}

// ByteSize is a size in bytes that YAML may spell as 67108864 or "64MiB".
type ByteSize int64

// UnmarshalYAML accepts an integer or a size with a unit (KiB, MiB, GiB,
// KB, MB, GB).
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var i int64
	if err := n.Decode(&i); err == nil {
		*b = ByteSize(i)
		return nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: expected a size in bytes such as 64MiB", n.Line)
	}
	v, err := units.ParseStrictBytes(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("line %d: %q is not a size in bytes (e.g. 64MiB): %v", n.Line, s, err)
	}
	*b = ByteSize(v)
	return nil
}

// Default values.
const (
	DefaultInterval        = 15 * time.Second
	DefaultTimeout         = 10 * time.Second
	DefaultQueueMaxItems   = 1_000_000
	DefaultQueueMaxBytes   = 64 << 20
	DefaultInitialInterval = time.Second
	DefaultMaxInterval     = 30 * time.Second
	DefaultMachineIDFile   = "/etc/machine-id"
)

// NewConfig returns the defaults: no targets, so nothing is exported.
func NewConfig() *Config {
	return &Config{Interval: DefaultInterval, MachineIDFile: DefaultMachineIDFile, Targets: map[string]*ExporterConfig{}}
}

var nameRe = regexp.MustCompile(`^[a-zA-Z][0-9a-zA-Z_]{0,62}(/[^\pZ\pC\pS/]+)?$`)

// SplitName returns a target name's type and instance name.
func SplitName(full string) (typ, name string) {
	typ, name, _ = strings.Cut(full, "/")
	return typ, name
}

// setDefaults fills what a target leaves unset. Environment defaults are
// applied separately, per signal, by resolve.
func (e *ExporterConfig) setDefaults(typ string) {
	if len(e.Signals) == 0 {
		switch typ {
		case TypePrometheusRemoteWrite:
			e.Signals = []string{SignalMetrics}
		default:
			e.Signals = []string{SignalMetrics, SignalLogs, SignalTraces}
		}
	}
	if e.Queue.MaxItems == 0 {
		e.Queue.MaxItems = DefaultQueueMaxItems
	}
	if e.Queue.MaxBytes == 0 {
		e.Queue.MaxBytes = DefaultQueueMaxBytes
	}
	if e.Retry.InitialInterval == 0 {
		e.Retry.InitialInterval = DefaultInitialInterval
	}
	if e.Retry.MaxInterval == 0 {
		e.Retry.MaxInterval = DefaultMaxInterval
	}
}

// Validate checks the section and returns every problem, each naming its
// field path below "exporters".
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if c.Interval <= 0 {
		add("interval", "must be positive, got %s", c.Interval)
	}
	for k := range c.ResourceAttributes {
		if k == "" {
			add("resource_attributes", "an attribute name is empty")
		}
	}
	names := make([]string, 0, len(c.Targets))
	for n := range c.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, full := range names {
		e := c.Targets[full]
		path := "targets." + full
		if e == nil {
			add(path, "must be a mapping (at least {} )")
			continue
		}
		typ, _ := SplitName(full)
		if !nameRe.MatchString(full) {
			add(path, "a target name is <type> or <type>/<name>, e.g. otlp/central")
			continue
		}
		switch typ {
		case TypeOTLP, TypeOTLPHTTP, TypePrometheusRemoteWrite:
		default:
			add(path, "unknown exporter type %q (known: %s, %s, %s)", typ, TypeOTLP, TypeOTLPHTTP, TypePrometheusRemoteWrite)
			continue
		}
		// Validate the target as it will run, on a copy: Validate
		// changes nothing.
		withDefaults := *e
		withDefaults.setDefaults(typ)
		e = &withDefaults
		for i, s := range e.Signals {
			switch s {
			case SignalMetrics:
			case SignalLogs, SignalTraces:
				if typ == TypePrometheusRemoteWrite {
					add(fmt.Sprintf("%s.signals[%d]", path, i), "prometheusremotewrite carries only metrics, got %q", s)
				}
			default:
				add(fmt.Sprintf("%s.signals[%d]", path, i), "unknown signal %q (known: metrics, logs, traces)", s)
			}
			if slices.Index(e.Signals, s) != i {
				add(fmt.Sprintf("%s.signals[%d]", path, i), "%q is listed twice", s)
			}
		}
		if e.Protocol != "" {
			switch {
			case typ == TypePrometheusRemoteWrite:
				add(path+".protocol", "applies to otlp and otlphttp only")
			case typ == TypeOTLPHTTP && e.Protocol == ProtocolGRPC:
				add(path+".protocol", "otlphttp cannot use grpc; use type otlp")
			case e.Protocol != ProtocolGRPC && e.Protocol != ProtocolHTTPProtobuf && e.Protocol != ProtocolHTTPJSON:
				add(path+".protocol", "must be grpc, http/protobuf or http/json, got %q", e.Protocol)
			}
		}
		if typ == TypePrometheusRemoteWrite {
			if e.Endpoint == "" {
				add(path+".endpoint", "required: the remote write URL, e.g. http://prometheus:9090/api/v1/write")
			} else if u, err := url.Parse(e.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(path+".endpoint", "must be an http:// or https:// URL, got %q", e.Endpoint)
			}
			if e.Compression != "" && e.Compression != "snappy" {
				add(path+".compression", "remote write always uses snappy, got %q", e.Compression)
			}
			for k, v := range e.ExternalLabels {
				if k == "" || v == "" {
					add(path+".external_labels", "names and values must not be empty (%q: %q)", k, v)
				}
			}
		} else {
			if len(e.ExternalLabels) > 0 {
				add(path+".external_labels", "applies to prometheusremotewrite only")
			}
			for _, sig := range e.Signals {
				r, err := c.resolveOTLP(typ, e, sig)
				if err != nil {
					add(path, "%s: %v", sig, err)
					continue
				}
				if r.Endpoint == "" {
					add(path+".endpoint", "required for %s (or set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_%s_ENDPOINT)", sig, strings.ToUpper(sig))
				}
			}
			switch e.Compression {
			case "", "gzip", "zstd", "snappy", "none":
			default:
				add(path+".compression", "must be gzip, zstd, snappy or none, got %q", e.Compression)
			}
		}
		if e.Timeout < 0 {
			add(path+".timeout", "must not be negative, got %s", e.Timeout)
		}
		if e.Queue.MaxItems < 0 {
			add(path+".queue.max_items", "must be positive, got %d", e.Queue.MaxItems)
		}
		if e.Queue.MaxBytes < 0 {
			add(path+".queue.max_bytes", "must be positive, got %d", e.Queue.MaxBytes)
		}
		if d := e.Queue.Directory; d != "" {
			if !strings.HasPrefix(d, "/") {
				add(path+".queue.directory", "must be an absolute path, got %q", d)
			}
		}
		if e.Retry.InitialInterval < 0 {
			add(path+".retry.initial_interval", "must be positive, got %s", e.Retry.InitialInterval)
		}
		if e.Retry.MaxInterval < e.Retry.InitialInterval {
			add(path+".retry.max_interval", "must be at least initial_interval (%s), got %s", e.Retry.InitialInterval, e.Retry.MaxInterval)
		}
		if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
			add(path+".tls", "cert_file and key_file go together")
		}
	}
	return errors.Join(errs...)
}

// Check implements component.Checker: every TLS file a target names must
// be there (they are read when the exporters start).
func (c *Config) Check() (string, error) {
	var errs []error
	names := make([]string, 0, len(c.Targets))
	for n := range c.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, full := range names {
		e := c.Targets[full]
		if e == nil {
			continue
		}
		for _, f := range []struct{ name, v string }{{"ca_file", e.TLS.CAFile}, {"cert_file", e.TLS.CertFile}, {"key_file", e.TLS.KeyFile}} {
			if f.v == "" {
				continue
			}
			if _, err := os.Stat(f.v); err != nil {
				errs = append(errs, fmt.Errorf("targets.%s.tls.%s: %w", full, f.name, err))
			}
		}
	}
	return "", errors.Join(errs...)
}

// Enabled reports whether any target is configured.
func (c *Config) Enabled() bool { return len(c.Targets) > 0 }
