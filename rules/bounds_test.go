package rules

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// HostileQuery loads far more samples than any rule needs: every series,
// evaluated every millisecond over the retention (a subquery). Unbounded,
// it took the agent from 155 MB to 1.58 GB (issue 18).
const HostileQuery = `last_over_time({__name__=~".+"}[20m:1ms])`

// The query API stops a query at max_samples (422, counted) and answers
// 404 once switched off, without a restart.
func TestQueryAPIBounds(t *testing.T) {
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.QueryAPI.MaxSamples = 5000
	cfg.IngestAll = true // no rule reads the gauge: stored for the query API
	cfg.EvaluationInterval = 100 * time.Millisecond
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "bounded_gauge", Help: "x"})
	te := startEngine(t, cfg, g)

	query := func(q string) (int, string) {
		resp, err := http.Get(te.srv.URL + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Half a second of samples: well over 5,000 at one a millisecond.
	testenv.EventuallyTrue(t, 30*time.Second, "five samples of the gauge in the TSDB", func() bool {
		code, body := query("count_over_time(bounded_gauge[1m]) >= 5")
		return code == 200 && strings.Contains(body, `"result":[{`)
	})
	code, body := query(HostileQuery)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "too many samples") {
		t.Errorf("hostile query = %d %s, want 422 with too many samples", code, body)
	}
	if got := testutil.ToFloat64(te.queryRefused.WithLabelValues("max_samples")); got != 1 {
		t.Errorf("vigil_rules_query_api_refused_total{reason=max_samples} = %v, want 1", got)
	}

	off := NewConfig()
	off.RuleFiles = nil
	off.QueryAPI.Enabled = false
	if err := off.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := te.ApplyConfig(context.Background(), off); err != nil {
		t.Fatal(err)
	}
	if code, body := query("1"); code != http.StatusNotFound || !strings.Contains(body, "rules.query_api.enabled") {
		t.Errorf("query API off: %d %s, want 404", code, body)
	}
}

func TestQueryAPIConfigValidation(t *testing.T) {
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.QueryAPI = QueryAPIConfig{Enabled: true}
	cfg.AlertmanagerWebhook = WebhookConfig{Enabled: true, BearerTokenFile: tokenFile(t, "x"), MaxBodyBytes: 1}
	err := cfg.Validate()
	for _, want := range []string{"query_api.max_samples: must be positive", "query_api.timeout: must be positive",
		"query_api.max_concurrency: must be positive", "alertmanager_webhook.max_alerts: must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}

// webhookPayload is one webhook call with n distinct firing alerts, named
// from first on.
func webhookPayload(first, n int) string {
	var b strings.Builder
	b.WriteString(`{"version":"4","status":"firing","alerts":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"status":"firing","labels":{"alertname":"Flood","n":"%d"},"startsAt":"2026-11-25T10:00:00Z"}`, first+i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// Webhook alerts kept are capped: new ones beyond max_alerts are dropped
// and counted (repeats of kept ones still fold), and expiry makes room.
func TestWebhookAlertsAreCapped(t *testing.T) {
	w, s, reg := newTestWebhook(t, WebhookConfig{Enabled: true, BearerTokenFile: tokenFile(t, "s3cret"), MaxBodyBytes: 4 << 20, MaxAlerts: 10})
	w.pub.setMaxWebhook(10)
	sub := s.Subscribe(100)
	defer sub.Close()

	code, body := post(t, w, webhookPayload(0, 25), "Bearer s3cret")
	if code != 0 && code != 200 || !strings.Contains(body, `"alerts":25,"dropped":15`) {
		t.Fatalf("flood call: %d %s", code, body)
	}
	if got := len(sub.C()); got != 10 {
		t.Errorf("%d alerts published, want 10", got)
	}
	if got := testutil.ToFloat64(w.pub.dropped); got != 15 {
		t.Errorf("vigil_rules_webhook_alerts_dropped_total = %v, want 15", got)
	}
	// Alertmanager repeating the kept alerts: nothing dropped, nothing new.
	if _, body := post(t, w, webhookPayload(0, 10), "Bearer s3cret"); !strings.Contains(body, `"dropped":0`) {
		t.Errorf("repeat call: %s", body)
	}
	if got := len(sub.C()); got != 10 {
		t.Errorf("repeats were published again: %d on the stream", got)
	}
	// Expiry, on its timer, forgets alerts nobody repeated for a day.
	w.pub.expire(time.Now().Add(keepFiring + time.Minute))
	if _, body := post(t, w, webhookPayload(100, 10), "Bearer s3cret"); !strings.Contains(body, `"dropped":0`) {
		t.Errorf("after expiry: %s", body)
	}
	if n, err := testutil.GatherAndCount(reg, "vigil_rules_alerts_kept"); err != nil || n != 2 {
		t.Errorf("vigil_rules_alerts_kept: %d series, %v", n, err)
	}
}

// A webhook call costs the same however many alerts are kept: publishing
// never walks the kept alerts (expiry does, on its timer), so the
// allocations of one call of 100 new alerts do not depend on whether 100
// or 9,000 are kept. BenchmarkWebhookCall shows the time per call.
func TestWebhookCallCostIndependentOfKeptAlerts(t *testing.T) {
	allocs := func(kept int) float64 {
		w, _, _ := newTestWebhook(t, WebhookConfig{Enabled: true, BearerTokenFile: tokenFile(t, "s3cret"), MaxBodyBytes: 4 << 20, MaxAlerts: 10000})
		w.pub.setMaxWebhook(10000)
		post(t, w, webhookPayload(1_000_000, kept), "Bearer s3cret")
		// A firing alert older than a day is expired by the timer only:
		// a call must not walk the kept alerts to find it.
		w.pub.mu.Lock()
		for k, s := range w.pub.last {
			s.seen = s.seen.Add(-2 * keepFiring)
			w.pub.last[k] = s
			break
		}
		before := len(w.pub.last)
		w.pub.mu.Unlock()
		body := webhookPayload(0, 100)
		n := testing.AllocsPerRun(20, func() { post(t, w, body, "Bearer s3cret") })
		w.pub.mu.Lock()
		after := len(w.pub.last)
		w.pub.mu.Unlock()
		if after != before+100 {
			t.Errorf("kept %d: a call changed the kept alerts from %d to %d, want only its own 100 added (no scan)", kept, before, after)
		}
		return n
	}
	small, large := allocs(100), allocs(9000)
	t.Logf("allocations per call of 100 alerts: %.0f with 100 kept, %.0f with 9,000 kept", small, large)
	if large > small*1.05+10 {
		t.Errorf("a call allocates %.0f with 9,000 alerts kept against %.0f with 100: cost grows with what is kept", large, small)
	}
}

// BenchmarkWebhookCall times one call of 100 alerts (Alertmanager
// repeating them) with 100 and 9,000 alerts kept, and one call of 44,000
// distinct alerts (issue 18's flood) into a full store.
func BenchmarkWebhookCall(b *testing.B) {
	for _, kept := range []int{100, 9000} {
		b.Run(fmt.Sprintf("kept=%d", kept), func(b *testing.B) {
			w, _, _ := newBenchWebhook(b)
			post(b, w, webhookPayload(1_000_000, kept), "Bearer s3cret")
			body := webhookPayload(1_000_000, 100)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				post(b, w, body, "Bearer s3cret")
			}
		})
	}
	b.Run("flood=44000", func(b *testing.B) {
		w, _, _ := newBenchWebhook(b)
		body := webhookPayload(0, 44000)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			post(b, w, body, "Bearer s3cret")
		}
	})
}

func newBenchWebhook(b *testing.B) (*webhook, *Stream, *prometheus.Registry) {
	b.Helper()
	reg := prometheus.NewRegistry()
	s := NewStream()
	cfg := WebhookConfig{Enabled: true, BearerTokenFile: tokenFile(b, "s3cret"), MaxBodyBytes: 64 << 20, MaxAlerts: 10000}
	p := newPublisher(s, reg)
	p.setMaxWebhook(cfg.MaxAlerts)
	w, err := newWebhook(cfg, p, reg, nil)
	if err != nil {
		b.Fatal(err)
	}
	return w, s, reg
}
