package rules

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestPrometheusAlertmanagerWebhookEndToEnd: a real Prometheus scrapes a
// switch metric from Vigil's server and fires an alert to a real
// Alertmanager, which delivers it to Vigil's authenticated webhook; the
// alert appears on the stream, firing and then resolved.
func TestPrometheusAlertmanagerWebhookEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and Alertmanager")
	}
	tok := tokenFile(t, "e2e-secret")
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.AlertmanagerWebhook = WebhookConfig{Enabled: true, BearerTokenFile: tok, MaxBodyBytes: 1 << 20, MaxAlerts: 100}
	sw := prometheus.NewGauge(prometheus.GaugeOpts{Name: "e2e_switch", Help: "1 while the alert should fire."})
	sw.Set(1)
	te := startEngine(t, cfg, sw)
	// Expose the switch for Prometheus to scrape, on the same server.
	te.srv.Config.Handler.(*http.ServeMux).Handle("GET /metrics", promhttp.HandlerFor(te.reg, promhttp.HandlerOpts{}))
	sub := te.stream.Subscribe(100)
	defer sub.Close()

	am := testenv.StartAlertmanager(t, fmt.Sprintf(`route:
  receiver: vigil
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: vigil
    webhook_configs:
      - url: %q
        send_resolved: true
        http_config:
          authorization:
            credentials_file: %q
`, te.srv.URL+WebhookPath, tok))
	ruleFile := filepath.Join(t.TempDir(), "e2e.rules.yml")
	writeFile(t, filepath.Dir(ruleFile), filepath.Base(ruleFile), `
groups:
  - name: e2e
    rules:
      - alert: VigilE2ESwitchOn
        expr: e2e_switch == 1
        labels:
          severity: page
        annotations:
          summary: the switch is on
`)
	testenv.StartPrometheus(t, testenv.PrometheusOptions{
		ScrapeTargets:    []string{strings.TrimPrefix(te.srv.URL, "http://")},
		ScrapeJobs:       []string{"vigil"},
		RuleFiles:        []string{ruleFile},
		AlertmanagerURLs: []string{am.URL},
	})

	a := nextAlertWithin(t, sub, "VigilE2ESwitchOn", StateFiring, 2*time.Minute)
	if a.Source != SourceAlertmanager || a.Labels["severity"] != "page" || a.Labels["job"] != "vigil" ||
		a.Annotations["summary"] != "the switch is on" || !strings.Contains(a.GeneratorURL, "/graph") {
		t.Errorf("alert from Alertmanager: %+v", a)
	}
	sw.Set(0)
	r := nextAlertWithin(t, sub, "VigilE2ESwitchOn", StateResolved, 2*time.Minute)
	if r.Fingerprint != a.Fingerprint || r.EndsAt.IsZero() {
		t.Errorf("resolved alert: %+v", r)
	}
	if got := testutil.ToFloat64(te.webhook.requests.WithLabelValues("unauthorized")); got != 0 {
		t.Errorf("Alertmanager's calls were refused %v times", got)
	}
}

func nextAlertWithin(t *testing.T, sub *Subscription, name string, state State, d time.Duration) Alert {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case a := <-sub.C():
			if a.Name() == name && a.State == state {
				return a
			}
		case <-timeout:
			t.Fatalf("no %s alert %s on the stream within %s", state, name, d)
		}
	}
}
