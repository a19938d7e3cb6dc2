package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PrometheusOptions configure [Prometheus].
type PrometheusOptions struct {
	// ScrapeTargets are host:port targets to scrape over HTTP at /metrics.
	ScrapeTargets []string
	// ScrapeJobs, when set, names the job of each ScrapeTargets entry
	// (same length); otherwise every target is in job "testenv".
	ScrapeJobs []string
	// ScrapeInterval (default 1s) and EvaluationInterval (default 1s).
	ScrapeInterval, EvaluationInterval time.Duration
	// RuleFiles are paths of rule files to load.
	RuleFiles []string
	// AlertmanagerURLs are Alertmanager base URLs (http://host:port) to send
	// alerts to; alerts are resent every second.
	AlertmanagerURLs []string
	// RemoteWriteReceiver enables /api/v1/write.
	RemoteWriteReceiver bool
	// ExtraConfig is appended to the generated prometheus.yml as-is (YAML
	// top-level sections such as remote_write:).
	ExtraConfig string
	// Args are extra command-line flags.
	Args []string
}

// Prometheus is a Prometheus server (Debian's prometheus, 2.x) started by
// [Prometheus].
type Prometheus struct {
	// URL is the base URL, http://127.0.0.1:<port>.
	URL string
	// ConfigFile is the path of the generated configuration.
	ConfigFile string
	// Process is the server process.
	*Process
}

// StartPrometheus starts Prometheus with opts and waits until it is ready.
// Its TSDB lives in the test's temp folder.
func StartPrometheus(t TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	bin := Binary(t, "prometheus")
	dir := t.TempDir()
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.EvaluationInterval == 0 {
		opts.EvaluationInterval = time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		promDuration(opts.ScrapeInterval), promDuration(opts.ScrapeInterval), promDuration(opts.EvaluationInterval))
	if len(opts.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range opts.RuleFiles {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(f))
		}
	}
	if len(opts.AlertmanagerURLs) > 0 {
		b.WriteString("alerting:\n  alertmanagers:\n")
		for _, u := range opts.AlertmanagerURLs {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatalf("testenv: Alertmanager URL %q: %v", u, err)
			}
			scheme := pu.Scheme
			if scheme == "" {
				scheme = "http"
			}
			fmt.Fprintf(&b, "    - scheme: %s\n      static_configs:\n        - targets: [%s]\n", scheme, strconv.Quote(pu.Host))
			if p := strings.TrimSuffix(pu.Path, "/"); p != "" {
				fmt.Fprintf(&b, "      path_prefix: %s\n", strconv.Quote(p))
			}
		}
	}
	if len(opts.ScrapeTargets) > 0 {
		if len(opts.ScrapeJobs) != 0 && len(opts.ScrapeJobs) != len(opts.ScrapeTargets) {
			t.Fatalf("testenv: ScrapeJobs must name one job per ScrapeTargets entry")
		}
		jobs := map[string][]string{}
		var order []string
		for i, target := range opts.ScrapeTargets {
			job := "testenv"
			if len(opts.ScrapeJobs) > 0 {
				job = opts.ScrapeJobs[i]
			}
			if _, ok := jobs[job]; !ok {
				order = append(order, job)
			}
			jobs[job] = append(jobs[job], strconv.Quote(target))
		}
		b.WriteString("scrape_configs:\n")
		for _, job := range order {
			fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n      - targets: [%s]\n", strconv.Quote(job), strings.Join(jobs[job], ", "))
		}
	}
	if opts.ExtraConfig != "" {
		b.WriteString(opts.ExtraConfig)
		b.WriteString("\n")
	}
	cfg := writeFile(t, dir, "prometheus.yml", b.String())
	port := FreePort(t)
	p := &Prometheus{URL: "http://" + hostPort(port), ConfigFile: cfg}
	args := []string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + hostPort(port),
		"--web.enable-lifecycle",
		"--rules.alert.resend-delay=1s",
		"--log.level=info",
	}
	if opts.RemoteWriteReceiver {
		args = append(args, "--web.enable-remote-write-receiver")
	}
	args = append(args, opts.Args...)
	p.Process = StartProcess(t, Command{
		Name:  "prometheus",
		Path:  bin,
		Args:  args,
		Ready: HTTPReady(p.URL + "/-/ready"),
	})
	return p
}

func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}

// Sample is one element of an instant query's result vector.
type Sample struct {
	// Metric holds the series' labels, __name__ included when present.
	Metric map[string]string
	// Value is the sample value; Time its timestamp.
	Value float64
	Time  time.Time
}

// Query runs an instant PromQL query and returns the result vector. A scalar
// result is returned as one sample without labels.
func (p *Prometheus) Query(ctx context.Context, promql string) ([]Sample, error) {
	u := p.URL + "/api/v1/query?" + url.Values{"query": {promql}}.Encode()
	body, err := httpGet(ctx, u)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("query %q: %w", promql, err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", promql, resp.Error)
	}
	switch resp.Data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(resp.Data.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(vec))
		for _, v := range vec {
			s, err := promSample(v.Metric, v.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(resp.Data.Result, &v); err != nil {
			return nil, err
		}
		s, err := promSample(map[string]string{}, v)
		if err != nil {
			return nil, err
		}
		return []Sample{s}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %s is not supported", promql, resp.Data.ResultType)
	}
}

func promSample(metric map[string]string, v [2]any) (Sample, error) {
	ts, ok := v[0].(float64)
	if !ok {
		return Sample{}, fmt.Errorf("bad sample time %v", v[0])
	}
	str, ok := v[1].(string)
	if !ok {
		return Sample{}, fmt.Errorf("bad sample value %v", v[1])
	}
	f, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return Sample{}, err
	}
	sec := int64(ts)
	return Sample{Metric: metric, Value: f, Time: time.Unix(sec, int64((ts-float64(sec))*1e9))}, nil
}

// WaitForQuery polls promql every 500ms until cond accepts the result, and
// fails the test after timeout. It returns the accepted result.
func (p *Prometheus) WaitForQuery(t TB, timeout time.Duration, promql string, cond func([]Sample) bool) []Sample {
	t.Helper()
	var got []Sample
	Eventually(t, timeout, 500*time.Millisecond, "query "+promql, func(ctx context.Context) error {
		res, err := p.Query(ctx, promql)
		if err != nil {
			return err
		}
		if !cond(res) {
			return fmt.Errorf("result %v: %w", res, errNotYet)
		}
		got = res
		return nil
	})
	return got
}

// Reload asks Prometheus to reload its configuration and rule files.
func (p *Prometheus) Reload(ctx context.Context) error {
	return postEmpty(ctx, p.URL+"/-/reload")
}
