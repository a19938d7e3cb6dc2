package exporters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	prw "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusremotewriteexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configcompression"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// sendFunc decodes one queued request and hands it to a collector exporter.
type sendFunc func(ctx context.Context, data []byte) error

// collectorHost is the component.Host the embedded collector components
// run under: it offers no extensions to them (their own queues are off;
// Vigil's queue sits in front).
type collectorHost struct{}

func (collectorHost) GetExtensions() map[component.ID]component.Component { return nil }

func telemetry(logger *slog.Logger) component.TelemetrySettings {
	return component.TelemetrySettings{
		Logger:         newZapLogger(logger),
		TracerProvider: tracenoop.NewTracerProvider(),
		MeterProvider:  metricnoop.NewMeterProvider(),
		Resource:       pcommon.NewResource(),
	}
}

var unsafeName = regexp.MustCompile(`[^0-9A-Za-z_.-]`)

// componentName turns a target's instance name into a collector component
// name.
func componentName(full string) string {
	_, name := SplitName(full)
	if name == "" {
		return ""
	}
	return unsafeName.ReplaceAllString(name, "_")
}

func tlsConfig(t TLSConfig) configtls.ClientConfig {
	c := configtls.ClientConfig{
		Insecure:           t.Insecure,
		InsecureSkipVerify: t.InsecureSkipVerify,
		ServerName:         t.ServerName,
	}
	c.CAFile = t.CAFile
	c.CertFile = t.CertFile
	c.KeyFile = t.KeyFile
	return c
}

func headers(h map[string]string) configopaque.MapList {
	var ml configopaque.MapList
	for k, v := range h {
		ml.Set(k, configopaque.String(v))
	}
	return ml
}

func compression(s string) configcompression.Type {
	if s == "none" {
		return ""
	}
	return configcompression.Type(s)
}

// buildExporter creates the collector exporter for one target and signal,
// with its own queue and retries switched off: Vigil's queue and sender do
// both, so that the oldest data is dropped first and every attempt is
// counted.
func buildExporter(ctx context.Context, c *Config, full string, e *ExporterConfig, signal string, logger *slog.Logger) (component.Component, sendFunc, error) {
	typ, _ := SplitName(full)
	var (
		f   exporter.Factory
		cfg component.Config
	)
	switch typ {
	case TypePrometheusRemoteWrite:
		f = prw.NewFactory()
		pc := f.CreateDefaultConfig().(*prw.Config)
		timeout := e.Timeout
		if timeout == 0 {
			timeout = DefaultTimeout
		}
		pc.HTTP.Endpoint = e.Endpoint
		pc.HTTP.Headers = headers(e.Headers)
		pc.HTTP.TLS = tlsConfig(e.TLS)
		pc.HTTP.Timeout = timeout
		pc.TimeoutSettings.Timeout = timeout
		pc.BackOffConfig.Enabled = false
		pc.RemoteWriteQueue.Enabled = false
		pc.ExternalLabels = e.ExternalLabels
		if pc.ExternalLabels == nil {
			pc.ExternalLabels = map[string]string{}
		}
		// Names are Prometheus names already: no suffixes added.
		pc.TranslationStrategy = "UnderscoreEscapingWithoutSuffixes"
		pc.SendMetadata = true
		pc.DisableScopeInfo = true
		cfg = pc
	default:
		s, err := c.resolveOTLP(typ, e, signal)
		if err != nil {
			return nil, nil, err
		}
		if s.Protocol == ProtocolGRPC {
			f = otlpexporter.NewFactory()
			oc := f.CreateDefaultConfig().(*otlpexporter.Config)
			oc.ClientConfig.Endpoint = s.Endpoint
			oc.ClientConfig.Headers = headers(s.Headers)
			oc.ClientConfig.Compression = compression(s.Compression)
			oc.ClientConfig.TLS = tlsConfig(s.TLS)
			oc.TimeoutConfig.Timeout = s.Timeout
			oc.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
			oc.RetryConfig.Enabled = false
			cfg = oc
		} else {
			f = otlphttpexporter.NewFactory()
			hc := f.CreateDefaultConfig().(*otlphttpexporter.Config)
			hc.ClientConfig.Endpoint = s.Endpoint
			switch signal {
			case SignalMetrics:
				hc.MetricsEndpoint = s.SignalURL
			case SignalLogs:
				hc.LogsEndpoint = s.SignalURL
			case SignalTraces:
				hc.TracesEndpoint = s.SignalURL
			}
			hc.ClientConfig.Headers = headers(s.Headers)
			hc.ClientConfig.Compression = compression(s.Compression)
			hc.ClientConfig.TLS = tlsConfig(s.TLS)
			hc.ClientConfig.Timeout = s.Timeout
			if s.Protocol == ProtocolHTTPJSON {
				hc.Encoding = otlphttpexporter.EncodingJSON
			}
			hc.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
			hc.RetryConfig.Enabled = false
			cfg = hc
		}
	}
	if v, ok := cfg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return nil, nil, err
		}
	}
	set := exporter.Settings{
		ID:                component.NewIDWithName(f.Type(), componentName(full)),
		TelemetrySettings: telemetry(logger.With("exporter", full, "signal", signal)),
		BuildInfo:         component.BuildInfo{Command: "vigil", Description: "Vigil node agent"},
	}
	switch signal {
	case SignalMetrics:
		exp, err := f.CreateMetrics(ctx, set, cfg)
		if err != nil {
			return nil, nil, err
		}
		var u pmetric.ProtoUnmarshaler
		return exp, func(ctx context.Context, data []byte) error {
			md, err := u.UnmarshalMetrics(data)
			if err != nil {
				return consumererror.NewPermanent(fmt.Errorf("decoding a queued request: %w", err))
			}
			return exp.ConsumeMetrics(ctx, md)
		}, nil
	case SignalLogs:
		exp, err := f.CreateLogs(ctx, set, cfg)
		if err != nil {
			return nil, nil, err
		}
		var u plog.ProtoUnmarshaler
		return exp, func(ctx context.Context, data []byte) error {
			ld, err := u.UnmarshalLogs(data)
			if err != nil {
				return consumererror.NewPermanent(fmt.Errorf("decoding a queued request: %w", err))
			}
			return exp.ConsumeLogs(ctx, ld)
		}, nil
	case SignalTraces:
		exp, err := f.CreateTraces(ctx, set, cfg)
		if err != nil {
			return nil, nil, err
		}
		var u ptrace.ProtoUnmarshaler
		return exp, func(ctx context.Context, data []byte) error {
			td, err := u.UnmarshalTraces(data)
			if err != nil {
				return consumererror.NewPermanent(fmt.Errorf("decoding a queued request: %w", err))
			}
			return exp.ConsumeTraces(ctx, td)
		}, nil
	}
	return nil, nil, fmt.Errorf("unknown signal %q", signal)
}

// storageExtension opens the collector's filestorage extension on dir.
func storageExtension(ctx context.Context, full, dir string, logger *slog.Logger) (storage.Extension, error) {
	f := filestorage.NewFactory()
	cfg := f.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = dir
	cfg.CreateDirectory = true
	cfg.Compaction.Directory = dir
	cfg.Compaction.OnStart = true
	cfg.Compaction.OnRebound = true
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ext, err := f.Create(ctx, extension.Settings{
		ID:                component.NewIDWithName(f.Type(), componentName(full)),
		TelemetrySettings: telemetry(logger.With("exporter", full, "extension", "file_storage")),
		BuildInfo:         component.BuildInfo{Command: "vigil", Description: "Vigil node agent"},
	}, cfg)
	if err != nil {
		return nil, err
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return nil, errors.New("filestorage is not a storage extension")
	}
	if err := se.Start(ctx, collectorHost{}); err != nil {
		return nil, err
	}
	return se, nil
}
