package exporters

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// otlpSettings are one OTLP target's effective settings for one signal,
// after YAML, the OTEL_EXPORTER_OTLP_* environment variables and the
// defaults were merged (in that order of precedence).
type otlpSettings struct {
	Protocol string
	// Endpoint is the gRPC target, or the HTTP base URL to which
	// /v1/<signal> is appended.
	Endpoint string
	// SignalURL is the full HTTP URL for the signal, used as is (from
	// OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT).
	SignalURL   string
	Headers     map[string]string
	Timeout     time.Duration
	Compression string
	TLS         TLSConfig
}

func (c *Config) lookup(key string) (string, bool) {
	if c.lookupEnv != nil {
		return c.lookupEnv(key)
	}
	return os.LookupEnv(key)
}

// env returns the signal-specific variable OTEL_EXPORTER_OTLP_<SIGNAL>_<name>
// when set and not empty, else the generic OTEL_EXPORTER_OTLP_<name>; which
// tells which one it was.
func (c *Config) env(signal, name string) (v, which string) {
	specific := "OTEL_EXPORTER_OTLP_" + strings.ToUpper(signal) + "_" + name
	if v, ok := c.lookup(specific); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), specific
	}
	generic := "OTEL_EXPORTER_OTLP_" + name
	if v, ok := c.lookup(generic); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), generic
	}
	return "", ""
}

// resolveOTLP merges an OTLP target's YAML settings for one signal with the
// environment: explicit YAML, then OTEL_EXPORTER_OTLP_<SIGNAL>_*, then
// OTEL_EXPORTER_OTLP_*, then the defaults.
func (c *Config) resolveOTLP(typ string, e *ExporterConfig, signal string) (otlpSettings, error) {
	s := otlpSettings{Headers: map[string]string{}, TLS: e.TLS}

	// Protocol.
	s.Protocol = e.Protocol
	if s.Protocol == "" {
		if v, which := c.env(signal, "PROTOCOL"); v != "" {
			switch v {
			case ProtocolGRPC, ProtocolHTTPProtobuf, ProtocolHTTPJSON:
			default:
				return s, fmt.Errorf("%s: must be grpc, http/protobuf or http/json, got %q", which, v)
			}
			if typ == TypeOTLPHTTP && v == ProtocolGRPC {
				v = ProtocolHTTPProtobuf // the target's type says HTTP
			}
			s.Protocol = v
		}
	}
	if s.Protocol == "" {
		s.Protocol = ProtocolGRPC
		if typ == TypeOTLPHTTP {
			s.Protocol = ProtocolHTTPProtobuf
		}
	}

	// Endpoint.
	switch {
	case e.Endpoint != "":
		s.Endpoint = e.Endpoint
	default:
		v, which := c.env(signal, "ENDPOINT")
		if v != "" {
			if _, err := url.Parse(v); err != nil {
				return s, fmt.Errorf("%s: %v", which, err)
			}
			if s.Protocol != ProtocolGRPC && which != "OTEL_EXPORTER_OTLP_ENDPOINT" {
				s.SignalURL = v // per-signal HTTP endpoints are used as is
			} else {
				s.Endpoint = v
			}
		}
	}
	if s.Protocol == ProtocolGRPC && strings.HasPrefix(s.Endpoint, "http://") {
		s.TLS.Insecure = true
	}

	// Headers: environment first, YAML overrides per key.
	if v, which := c.env(signal, "HEADERS"); v != "" {
		h, err := parseHeaders(v)
		if err != nil {
			return s, fmt.Errorf("%s: %v", which, err)
		}
		maps.Copy(s.Headers, h)
	}
	maps.Copy(s.Headers, e.Headers)

	// Timeout.
	s.Timeout = e.Timeout
	if s.Timeout == 0 {
		if v, which := c.env(signal, "TIMEOUT"); v != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms <= 0 {
				return s, fmt.Errorf("%s: must be a positive number of milliseconds, got %q", which, v)
			}
			s.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}

	// Compression.
	s.Compression = e.Compression
	if s.Compression == "" {
		if v, which := c.env(signal, "COMPRESSION"); v != "" {
			if v != "gzip" && v != "none" {
				return s, fmt.Errorf("%s: must be gzip or none, got %q", which, v)
			}
			s.Compression = v
		}
	}
	if s.Compression == "" {
		s.Compression = "gzip"
	}

	// TLS files and plain-text gRPC.
	if s.TLS.CAFile == "" {
		s.TLS.CAFile, _ = c.env(signal, "CERTIFICATE")
	}
	if s.TLS.CertFile == "" && s.TLS.KeyFile == "" {
		s.TLS.CertFile, _ = c.env(signal, "CLIENT_CERTIFICATE")
		s.TLS.KeyFile, _ = c.env(signal, "CLIENT_KEY")
	}
	if !e.TLS.Insecure {
		if v, which := c.env(signal, "INSECURE"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return s, fmt.Errorf("%s: must be true or false, got %q", which, v)
			}
			s.TLS.Insecure = s.TLS.Insecure || b
		}
	}
	return s, nil
}

// parseHeaders reads the OTEL_EXPORTER_OTLP_HEADERS format:
// "key1=value1,key2=value2", values percent-encoded.
func parseHeaders(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("header %s: %v", k, err)
		}
		out[k] = dec
	}
	return out, nil
}
