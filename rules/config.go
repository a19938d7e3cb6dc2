package rules

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"time"
)

// Config is the `rules:` section of Vigil's configuration.
type Config struct {
	// Enabled runs the rules engine (local evaluation, webhook, fast-path
	// event alerts).
	Enabled bool `yaml:"enabled"`
	// EvaluationInterval is how often metrics are ingested into the local
	// TSDB and how often rule groups without their own interval are
	// evaluated.
	EvaluationInterval time.Duration `yaml:"evaluation_interval"`
	// Retention bounds how far back the local TSDB keeps samples.
	Retention time.Duration `yaml:"retention"`
	// MaxSeries bounds the number of series in the local TSDB; samples of
	// new series beyond it are dropped and counted.
	MaxSeries int `yaml:"max_series"`
	// IngestAll stores every series of the agent's metrics in the local
	// TSDB; by default only the series the loaded rules' selectors can
	// match are stored (for the query API, every series is then queryable).
	IngestAll bool `yaml:"ingest_all"`
	// StorageDir is where the TSDB head memory-maps full chunks; empty
	// means a fresh temporary directory removed at shutdown.
	StorageDir string `yaml:"storage_dir"`
	// RuleFiles are paths or globs of Prometheus rule files (or
	// PrometheusRule objects). "embedded:GLOB" names the default rule set
	// built into the binary, e.g. "embedded:*.rules.yml".
	RuleFiles []string `yaml:"rule_files"`
	// ExternalLabels are added to every alert (not to recorded series) and
	// are visible as $externalLabels in templates.
	ExternalLabels map[string]string `yaml:"external_labels"`
	// ExternalURL is the base of alerts' generator URLs.
	ExternalURL string `yaml:"external_url"`
	// ResendDelay is how long the rule manager waits before sending a
	// still-firing alert again; resends are not published on the stream
	// (only state changes are).
	ResendDelay time.Duration `yaml:"resend_delay"`
	// RemoteQueries evaluates selected rule groups against a
	// Prometheus-compatible query API instead of the local TSDB.
	RemoteQueries []RemoteQueryConfig `yaml:"remote_queries"`
	// AlertmanagerWebhook receives alerts from Alertmanager.
	AlertmanagerWebhook WebhookConfig `yaml:"alertmanager_webhook"`
	// EventAlerts turns fast-path events into alerts.
	EventAlerts EventAlertsConfig `yaml:"event_alerts"`
	// Evidence is evidence-based detection of workload health alerts from
	// request and connect outcomes (docs/detection.md).
	Evidence EvidenceConfig `yaml:"evidence"`
	// QueryAPI is the instant-query endpoint over the local TSDB
	// (/api/v1/query), for debugging rules.
	QueryAPI QueryAPIConfig `yaml:"query_api"`
}

// RemoteQueryConfig sends the queries of the rule groups it matches to a
// Prometheus-compatible endpoint (Prometheus, Thanos, Mimir,
// VictoriaMetrics). The rule files stay plain Prometheus rule files: the
// mapping lives here, by group name.
type RemoteQueryConfig struct {
	// Name identifies the endpoint in logs and metrics.
	Name string `yaml:"name"`
	// URL is the API's base URL, e.g. http://prometheus:9090.
	URL string `yaml:"url"`
	// Groups are regular expressions (fully anchored) matched against rule
	// group names.
	Groups []string `yaml:"groups"`
	// Timeout bounds one query.
	Timeout time.Duration `yaml:"timeout"`
	// BearerTokenFile is read on every request when set.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// TLS configures the client's TLS.
	TLS ClientTLSConfig `yaml:"tls"`
}

// ClientTLSConfig is a TLS client configuration.
type ClientTLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// WebhookConfig configures the Alertmanager webhook receiver. Every call
// must authenticate: with the bearer token, or (on the TLS listener) with a
// client certificate signed by ClientCAFile.
type WebhookConfig struct {
	// Enabled serves POST /api/v1/alertmanager on the agent's server (and
	// on the TLS listener when TLS is set).
	Enabled bool `yaml:"enabled"`
	// BearerTokenFile holds the token Alertmanager sends
	// (http_config.authorization.credentials_file). It is read at start and
	// on reload.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// TLS, when set, serves the webhook on its own listener with mutual TLS.
	TLS WebhookTLSConfig `yaml:"tls"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxAlerts bounds the alerts received through the webhook that are
	// kept (to fold repeats and answer /api/v1/alerts); new alerts beyond
	// it are dropped and counted. Resolved alerts are forgotten 30m after
	// they resolve and firing ones 24h after their last repeat, by a timer,
	// so a call costs the same however many alerts are kept.
	MaxAlerts int `yaml:"max_alerts"`
}

// QueryAPIConfig bounds the query API with Prometheus's own engine options
// and active query tracker.
type QueryAPIConfig struct {
	// Enabled serves GET and POST /api/v1/query; off, they answer 404.
	Enabled bool `yaml:"enabled"`
	// MaxSamples bounds the samples one query may hold in memory at once
	// (Prometheus's --query.max-samples); beyond it the query fails.
	MaxSamples int `yaml:"max_samples"`
	// Timeout bounds one query, its wait for a slot included
	// (--query.timeout).
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrency bounds queries running at once; more wait for a slot
	// within Timeout (--query.max-concurrency).
	MaxConcurrency int `yaml:"max_concurrency"`
}

// WebhookTLSConfig is the webhook's mutual-TLS listener.
type WebhookTLSConfig struct {
	// ListenAddress is host:port of the TLS listener.
	ListenAddress string `yaml:"listen_address"`
	CertFile      string `yaml:"cert_file"`
	KeyFile       string `yaml:"key_file"`
	// ClientCAFile verifies client certificates; a verified certificate
	// authenticates the call.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the TLS listener is configured.
func (t WebhookTLSConfig) Enabled() bool { return t.ListenAddress != "" }

// EventAlertsConfig configures the fast-path event alerts.
type EventAlertsConfig struct {
	// ProcessExit fires VigilProcessExitedNonZero for processes that exit
	// with a non-zero code or are killed by a signal.
	ProcessExit bool `yaml:"process_exit"`
	// OOMKill fires VigilOOMKill for OOM-killer victims.
	OOMKill bool `yaml:"oom_kill"`
	// ResolveAfter is how long an event alert fires without a repeat
	// before it is resolved.
	ResolveAfter time.Duration `yaml:"resolve_after"`
	// IgnoreSignals lists signals (numbers) whose deaths are not alerts;
	// by default SIGPIPE. A pod sandbox's (pause) death is never an alert:
	// the runtime kills it whenever the pod is stopped.
	IgnoreSignals []int `yaml:"ignore_signals"`
	// MaxActive bounds how many distinct event alerts can be active; more
	// are dropped and counted.
	MaxActive int `yaml:"max_active"`
}

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		Enabled:            true,
		EvaluationInterval: 5 * time.Second,
		Retention:          20 * time.Minute,
		MaxSeries:          200000,
		RuleFiles:          []string{"embedded:*.rules.yml"},
		ResendDelay:        time.Minute,
		AlertmanagerWebhook: WebhookConfig{
			MaxBodyBytes: 4 << 20,
			MaxAlerts:    10000,
		},
		QueryAPI: QueryAPIConfig{
			Enabled:        true,
			MaxSamples:     1_000_000,
			Timeout:        10 * time.Second,
			MaxConcurrency: 2,
		},
		Evidence: defaultEvidenceConfig(),
		EventAlerts: EventAlertsConfig{
			ProcessExit:   true,
			OOMKill:       true,
			ResolveAfter:  5 * time.Minute,
			IgnoreSignals: []int{13},
			MaxActive:     1000,
		},
	}
}

// Validate checks the section's values; each problem names its field. It
// reads no file: Check reads the token, TLS and rule files, so a bad one
// is reported (file, group, rule, problem) before anything is swapped.
func (c *Config) Validate() error {
	var errs []error
	add := func(path string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	if !c.Enabled {
		return nil
	}
	if c.EvaluationInterval < 100*time.Millisecond {
		add("evaluation_interval", fmt.Errorf("must be at least 100ms, got %s", c.EvaluationInterval))
	}
	if c.Retention < 2*c.EvaluationInterval || c.Retention < time.Minute {
		add("retention", fmt.Errorf("must be at least 1m and twice evaluation_interval, got %s", c.Retention))
	}
	c.Evidence.validate(add)
	if c.MaxSeries <= 0 {
		add("max_series", fmt.Errorf("must be positive, got %d", c.MaxSeries))
	}
	if c.ResendDelay < 0 {
		add("resend_delay", fmt.Errorf("must not be negative, got %s", c.ResendDelay))
	}
	if c.ExternalURL != "" {
		if _, err := url.Parse(c.ExternalURL); err != nil {
			add("external_url", err)
		}
	}
	for k := range c.ExternalLabels {
		if !labelNameRe.MatchString(k) {
			add("external_labels."+k, errors.New("invalid label name"))
		}
	}
	names := map[string]bool{}
	for i, rq := range c.RemoteQueries {
		p := fmt.Sprintf("remote_queries[%d]", i)
		if rq.Name == "" {
			add(p+".name", errors.New("must not be empty"))
		} else if names[rq.Name] {
			add(p+".name", fmt.Errorf("duplicate endpoint name %q", rq.Name))
		}
		names[rq.Name] = true
		if u, err := url.Parse(rq.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(p+".url", fmt.Errorf("must be an http(s) URL, got %q", rq.URL))
		}
		if len(rq.Groups) == 0 {
			add(p+".groups", errors.New("must name at least one rule group pattern"))
		}
		for j, g := range rq.Groups {
			if _, err := regexp.Compile("^(?:" + g + ")$"); err != nil {
				add(fmt.Sprintf("%s.groups[%d]", p, j), err)
			}
		}
		if rq.Timeout < 0 {
			add(p+".timeout", fmt.Errorf("must not be negative, got %s", rq.Timeout))
		}
		if (rq.TLS.CertFile == "") != (rq.TLS.KeyFile == "") {
			add(p+".tls", errors.New("cert_file and key_file must be set together"))
		}
	}
	w := c.AlertmanagerWebhook
	if w.Enabled {
		if w.BearerTokenFile == "" && w.TLS.ClientCAFile == "" {
			add("alertmanager_webhook", errors.New("needs authentication: set bearer_token_file, or tls with client_ca_file"))
		}
		if w.TLS.Enabled() {
			if _, _, err := net.SplitHostPort(w.TLS.ListenAddress); err != nil {
				add("alertmanager_webhook.tls.listen_address", err)
			}
			if w.TLS.CertFile == "" || w.TLS.KeyFile == "" {
				add("alertmanager_webhook.tls", errors.New("cert_file and key_file are required with listen_address"))
			}
		} else if w.TLS.ClientCAFile != "" || w.TLS.CertFile != "" {
			add("alertmanager_webhook.tls.listen_address", errors.New("required when TLS files are set (mutual TLS needs its own listener)"))
		}
		if w.MaxBodyBytes <= 0 {
			add("alertmanager_webhook.max_body_bytes", fmt.Errorf("must be positive, got %d", w.MaxBodyBytes))
		}
		if w.MaxAlerts <= 0 {
			add("alertmanager_webhook.max_alerts", fmt.Errorf("must be positive, got %d", w.MaxAlerts))
		}
	}
	if q := c.QueryAPI; q.Enabled {
		if q.MaxSamples <= 0 {
			add("query_api.max_samples", fmt.Errorf("must be positive, got %d", q.MaxSamples))
		}
		if q.Timeout <= 0 {
			add("query_api.timeout", fmt.Errorf("must be positive, got %s", q.Timeout))
		}
		if q.MaxConcurrency <= 0 {
			add("query_api.max_concurrency", fmt.Errorf("must be positive, got %d", q.MaxConcurrency))
		}
	}
	ea := c.EventAlerts
	if ea.ResolveAfter <= 0 {
		add("event_alerts.resolve_after", fmt.Errorf("must be positive, got %s", ea.ResolveAfter))
	}
	if ea.MaxActive <= 0 {
		add("event_alerts.max_active", fmt.Errorf("must be positive, got %d", ea.MaxActive))
	}
	for i, s := range ea.IgnoreSignals {
		if s <= 0 || s > 64 {
			add(fmt.Sprintf("event_alerts.ignore_signals[%d]", i), fmt.Errorf("not a signal number: %d", s))
		}
	}
	return errors.Join(errs...)
}

// Check implements component.Checker: it reads the files the section
// names (tokens, TLS files) and expands rule_files and loads every rule
// file, returning the digest of their contents.
func (c *Config) Check() (string, error) {
	if err := c.checkFiles(); err != nil {
		return "", err
	}
	files, err := ExpandRuleFiles(c.RuleFiles)
	if err != nil {
		return "", fmt.Errorf("rule_files: %w", err)
	}
	rs, err := LoadRuleFiles(files...)
	if err != nil {
		return "", fmt.Errorf("rule_files: %w", err)
	}
	return rs.Digest, nil
}

// checkFiles reports each token and TLS file that cannot be read, by
// field.
func (c *Config) checkFiles() error {
	var errs []error
	add := func(path string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	for i, rq := range c.RemoteQueries {
		p := fmt.Sprintf("remote_queries[%d]", i)
		add(p+".bearer_token_file", fileReadable(rq.BearerTokenFile))
		add(p+".tls.ca_file", fileReadable(rq.TLS.CAFile))
		add(p+".tls.cert_file", fileReadable(rq.TLS.CertFile))
		add(p+".tls.key_file", fileReadable(rq.TLS.KeyFile))
	}
	if w := c.AlertmanagerWebhook; c.Enabled && w.Enabled {
		if w.BearerTokenFile != "" {
			if _, err := readToken(w.BearerTokenFile); err != nil {
				add("alertmanager_webhook.bearer_token_file", err)
			}
		}
		if w.TLS.Enabled() {
			add("alertmanager_webhook.tls.cert_file", fileReadable(w.TLS.CertFile))
			add("alertmanager_webhook.tls.key_file", fileReadable(w.TLS.KeyFile))
			add("alertmanager_webhook.tls.client_ca_file", fileReadable(w.TLS.ClientCAFile))
		}
	}
	return errors.Join(errs...)
}

var labelNameRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func fileReadable(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
