package rules

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/internal/event"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// nextAlert waits for an alert matching name on sub.
func nextAlert(t *testing.T, sub *Subscription, name string, state State) Alert {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case a := <-sub.C():
			if a.Name() == name && a.State == state {
				return a
			}
		case <-timeout:
			t.Fatalf("no %s alert %s on the stream within 30s", state, name)
		}
	}
}

type testEngine struct {
	*Engine
	reg    *prometheus.Registry
	stream *Stream
	events *event.Bus
	srv    *httptest.Server
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startEngine runs an engine the way the agent does: one registry for its
// own metrics and the metrics it ingests, served over HTTP.
func startEngine(t *testing.T, cfg *Config, collectors ...prometheus.Collector) *testEngine {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	te := &testEngine{reg: prometheus.NewRegistry(), stream: NewStream(), events: event.NewBus()}
	te.reg.MustRegister(collectors...)
	mux := http.NewServeMux()
	e, err := NewEngine(cfg, Options{Registerer: te.reg, Gatherer: te.reg, Events: te.events, Alerts: te.stream, Handle: mux.Handle})
	if err != nil {
		t.Fatal(err)
	}
	te.Engine = e
	te.srv = httptest.NewServer(mux)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		te.srv.Close()
		if err := e.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return te
}

func (te *testEngine) getJSON(t *testing.T, path string, into any) {
	t.Helper()
	resp, err := http.Get(te.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatal(err)
	}
}

type queryResult struct {
	Status string `json:"status"`
	Data   struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func (te *testEngine) query(t *testing.T, q string) queryResult {
	var r queryResult
	te.getJSON(t, "/api/v1/query?query="+url.QueryEscape(q), &r)
	return r
}

const localRules = `
groups:
  - name: local
    rules:
      - record: job:test_value:max
        expr: max by (job) (test_value)
      - alert: TestValueHigh
        expr: job:test_value:max > 5
        labels:
          severity: page
        annotations:
          summary: 'value is {{ $value }} for {{ $labels.job }}'
  - name: failing
    rules:
      # Both series lose their name and collide: an evaluation error.
      - record: dup:test
        expr: '{__name__=~"test_value|test_other"} - 0'
`

func TestRulesFireAndResolveOnTheStream(t *testing.T) {
	dir := t.TempDir()
	cfg := NewConfig()
	cfg.EvaluationInterval = 200 * time.Millisecond
	cfg.RuleFiles = []string{writeFile(t, dir, "rules.yml", localRules)}
	cfg.ExternalLabels = map[string]string{"node": "n1"}
	value := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_value", Help: "h"}, []string{"job"})
	other := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_other", Help: "h"}, []string{"job"})
	value.WithLabelValues("t").Set(1)
	other.WithLabelValues("t").Set(1)
	te := startEngine(t, cfg, value, other)
	sub := te.stream.Subscribe(100)
	defer sub.Close()

	value.WithLabelValues("t").Set(7)
	a := nextAlert(t, sub, "TestValueHigh", StateFiring)
	if a.Source != SourceRule || a.Labels["job"] != "t" || a.Labels["severity"] != "page" || a.Labels["node"] != "n1" {
		t.Errorf("unexpected firing alert: %+v", a)
	}
	if a.Annotations["summary"] != "value is 7 for t" {
		t.Errorf("template not expanded: %q", a.Annotations["summary"])
	}
	if a.StartsAt.IsZero() || !a.EndsAt.IsZero() || a.Fingerprint != Fingerprint(a.Labels) {
		t.Errorf("bad times or fingerprint: %+v", a)
	}

	// State is visible: ALERTS series, /api/v1/alerts and /api/v1/rules.
	// The manager notifies before it appends the evaluation's samples.
	testenv.EventuallyTrue(t, 10*time.Second, "ALERTS series", func() bool {
		return len(te.query(t, `ALERTS{alertname="TestValueHigh",alertstate="firing",severity="page"}`).Data.Result) == 1
	})
	testenv.EventuallyTrue(t, 10*time.Second, "ALERTS_FOR_STATE", func() bool {
		return len(te.query(t, `ALERTS_FOR_STATE{alertname="TestValueHigh"}`).Data.Result) == 1
	})
	var alerts struct {
		Data struct {
			Alerts []apiAlert `json:"alerts"`
		} `json:"data"`
	}
	te.getJSON(t, "/api/v1/alerts", &alerts)
	if len(alerts.Data.Alerts) != 1 || alerts.Data.Alerts[0].State != "firing" || alerts.Data.Alerts[0].Value != "7e+00" {
		t.Errorf("/api/v1/alerts: %+v", alerts)
	}
	var rules struct {
		Status string
		Data   struct {
			Groups []struct {
				Name  string
				File  string
				Rules []map[string]any
			}
		}
	}
	te.getJSON(t, "/api/v1/rules", &rules)
	if len(rules.Data.Groups) != 2 {
		t.Fatalf("/api/v1/rules groups: %+v", rules)
	}
	for _, g := range rules.Data.Groups {
		if g.Name == "local" {
			if len(g.Rules) != 2 || g.Rules[1]["type"] != "alerting" || g.Rules[1]["state"] != "firing" || g.Rules[0]["type"] != "recording" {
				t.Errorf("local group: %+v", g.Rules)
			}
		}
		if g.Name == "failing" && (g.Rules[0]["health"] != "err" || !strings.Contains(g.Rules[0]["lastError"].(string), "same labelset")) {
			t.Errorf("failing group: %+v", g.Rules)
		}
	}
	// Evaluation failures and durations are metrics.
	key := cfg.RuleFiles[0] + ";failing"
	testenv.EventuallyTrue(t, 10*time.Second, "evaluation failures counted", func() bool {
		return testutil.ToFloat64(mustCounter(t, te.reg, "prometheus_rule_evaluation_failures_total", "rule_group", key)) > 0
	})
	if n, err := testutil.GatherAndCount(te.reg, "prometheus_rule_group_last_duration_seconds"); err != nil || n != 2 {
		t.Errorf("group durations: %d %v", n, err)
	}

	value.WithLabelValues("t").Set(1)
	r := nextAlert(t, sub, "TestValueHigh", StateResolved)
	if r.EndsAt.IsZero() || !r.StartsAt.Equal(a.StartsAt) || r.Fingerprint != a.Fingerprint {
		t.Errorf("resolved alert: %+v (fired %+v)", r, a)
	}
}

// mustCounter finds one series of a gathered metric family by one label.
func mustCounter(t *testing.T, g prometheus.Gatherer, name, label, value string) prometheus.Collector {
	t.Helper()
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := g.Gather()
		if err != nil {
			t.Error(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label && lp.GetValue() == value {
						ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "h", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
					}
				}
			}
		}
	})
}

func TestReloadKeepsRulesWhenNewOnesAreBad(t *testing.T) {
	dir := t.TempDir()
	cfg := NewConfig()
	cfg.EvaluationInterval = 200 * time.Millisecond
	file := writeFile(t, dir, "rules.yml", localRules)
	cfg.RuleFiles = []string{file}
	te := startEngine(t, cfg)
	names := func() []string {
		var out []string
		for _, g := range te.Manager().RuleGroups() {
			out = append(out, g.Name())
		}
		return out
	}
	before := strings.Join(names(), ",")
	oldDigest, err := cfg.Check()
	if err != nil {
		t.Fatal(err)
	}

	// A bad file is rejected by Check (so the agent never swaps) and by
	// ApplyConfig itself; Validate reads no file.
	bad := NewConfig()
	bad.EvaluationInterval = cfg.EvaluationInterval
	bad.RuleFiles = []string{"testdata/bad.rules.yml"}
	if err := bad.Validate(); err != nil {
		t.Fatalf("Validate read the rule file: %v", err)
	}
	if _, err := bad.Check(); err == nil {
		t.Fatal("bad rule file passed Check")
	}
	if err := te.ApplyConfig(context.Background(), bad); err == nil {
		t.Fatal("bad rule file applied")
	}
	if got := strings.Join(names(), ","); got != before {
		t.Fatalf("rule groups changed after a failed reload: %s -> %s", before, got)
	}

	// Same path, new content: the digest changes, so the agent sees a
	// change and the new groups replace the old ones.
	writeFile(t, dir, "rules.yml", "groups:\n  - name: replaced\n    rules:\n      - record: x\n        expr: vector(1)\n")
	good := NewConfig()
	good.EvaluationInterval = cfg.EvaluationInterval
	good.RuleFiles = []string{file}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if d, err := good.Check(); err != nil || d == oldDigest {
		t.Fatalf("digest did not change with the content: %v", err)
	}
	if err := te.ApplyConfig(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(), ","); got != "replaced" {
		t.Fatalf("groups after reload: %s", got)
	}
}

func TestRemoteQueryGroupsUseTheirEndpoint(t *testing.T) {
	// The "cluster" endpoint is another engine's Prometheus-compatible
	// query API over its own TSDB, which has a metric the local one lacks.
	cluster := NewConfig()
	cluster.EvaluationInterval = 200 * time.Millisecond
	cluster.RuleFiles = nil
	cluster.IngestAll = true // no rules read it: stored for the query API
	onlyRemote := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cluster_only_metric", Help: "h"})
	onlyRemote.Set(3)
	remote := startEngine(t, cluster, onlyRemote)

	dir := t.TempDir()
	cfg := NewConfig()
	cfg.EvaluationInterval = 200 * time.Millisecond
	cfg.RuleFiles = []string{writeFile(t, dir, "r.yml", `
groups:
  - name: cluster-capacity
    rules:
      - alert: ClusterMetricHigh
        expr: cluster_only_metric > 2
  - name: local-view
    rules:
      - alert: LocalSeesClusterMetric
        expr: cluster_only_metric > 2
`)}
	cfg.RemoteQueries = []RemoteQueryConfig{{Name: "cluster", URL: remote.srv.URL, Groups: []string{"cluster-.*"}, Timeout: 10 * time.Second}}
	te := startEngine(t, cfg)
	sub := te.stream.Subscribe(100)
	defer sub.Close()
	a := nextAlert(t, sub, "ClusterMetricHigh", StateFiring)
	if a.Source != SourceRule {
		t.Errorf("source %s", a.Source)
	}
	if got := testutil.ToFloat64(te.remoteQueries.WithLabelValues("cluster", "success")); got == 0 {
		t.Error("remote queries not counted")
	}
	for _, ar := range te.Manager().AlertingRules() {
		if ar.Name() == "LocalSeesClusterMetric" && ar.ActiveAlertsCount() != 0 {
			t.Error("a local group queried the remote endpoint")
		}
	}
	var rules struct {
		Data struct {
			Groups []apiRuleGroup
		}
	}
	te.getJSON(t, "/api/v1/rules", &rules)
	for _, g := range rules.Data.Groups {
		want := map[string]string{"cluster-capacity": "cluster", "local-view": ""}[g.Name]
		if g.QueryEndpoint != want {
			t.Errorf("group %s: queryEndpoint %q, want %q", g.Name, g.QueryEndpoint, want)
		}
	}
}

func TestShutdownBeforeStart(t *testing.T) {
	cfg := NewConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(cfg, Options{Events: event.NewBus()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
