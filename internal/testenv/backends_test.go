package testenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestPrometheusScrapesTarget(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "# TYPE testenv_target_value gauge\ntestenv_target_value 42\n")
	}))
	t.Cleanup(target.Close)

	p := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		ScrapeTargets: []string{strings.TrimPrefix(target.URL, "http://")},
		ScrapeJobs:    []string{"target"},
	})
	p.WaitForQuery(t, 2*time.Minute, `up{job="target"} == 1`, func(s []testenv.Sample) bool { return len(s) == 1 })
	got := p.WaitForQuery(t, time.Minute, `testenv_target_value{job="target"}`, func(s []testenv.Sample) bool { return len(s) == 1 })
	if got[0].Value != 42 {
		t.Fatalf("testenv_target_value = %v, want 42", got[0].Value)
	}
}

func TestAlertmanagerDeliversWebhook(t *testing.T) {
	type delivery struct {
		Status string `json:"status"`
		Alerts []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	var (
		mu  sync.Mutex
		got []delivery
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d delivery
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&d) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)

	am := testenv.StartAlertmanager(t, fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`, receiver.URL+"/hook"))

	alert := `[{"labels":{"alertname":"TestenvDown","severity":"page"},"annotations":{"summary":"testenv"}}]`
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, am.URL+"/api/v2/alerts", strings.NewReader(alert))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("post alert: %s", resp.Status)
	}
	http.DefaultClient.CloseIdleConnections()

	testenv.Eventually(t, 2*time.Minute, 200*time.Millisecond, "webhook delivery", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range got {
			for _, a := range d.Alerts {
				if a.Labels["alertname"] == "TestenvDown" && a.Status == "firing" {
					return nil
				}
			}
		}
		return fmt.Errorf("%d deliveries, none with a firing TestenvDown", len(got))
	})
}

func TestVictoriaLogsReadsBackLokiPush(t *testing.T) {
	v := testenv.StartVictoriaLogs(t)
	line := "testenv line " + strconv.FormatInt(time.Now().UnixNano(), 36)
	push := fmt.Sprintf(`{"streams":[{"stream":{"job":"testenv","level":"info"},"values":[[%q,%q]]}]}`,
		strconv.FormatInt(time.Now().UnixNano(), 10), line)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, v.LokiPushURL(), strings.NewReader(push))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("Loki push: %s: %s", resp.Status, body)
	}

	readBack := func(t *testing.T) {
		testenv.Eventually(t, time.Minute, 250*time.Millisecond, "pushed line in VictoriaLogs", func(ctx context.Context) error {
			rows, err := v.Query(ctx, `{job="testenv"}`)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r["_msg"] == line && r["level"] == "info" {
					return nil
				}
			}
			return fmt.Errorf("line not found in %d rows: %v", len(rows), rows)
		})
	}
	readBack(t)

	// Outage tests rely on a restart keeping the port and the data.
	if err := v.Restart(); err != nil {
		t.Fatal(err)
	}
	readBack(t)
}

func TestOTelCollectorWritesSpan(t *testing.T) {
	c := testenv.StartOTelCollector(t)
	traces := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"testenv"}}]},
 "scopeSpans":[{"scope":{"name":"testenv"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
 "name":"testenv-span","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000",
 "attributes":[{"key":"http.route","value":{"stringValue":"/heal"}}]}]}]}]}`
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.HTTPURL+"/v1/traces", bytes.NewBufferString(traces))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("OTLP export: %s: %s", resp.Status, body)
	}

	testenv.Eventually(t, time.Minute, 200*time.Millisecond, "span in the collector's traces file", func(context.Context) error {
		spans, err := c.Spans()
		if err != nil {
			return err
		}
		for _, s := range spans {
			if s.Name == "testenv-span" && s.Resource["service.name"] == "testenv" && s.Attributes["http.route"] == "/heal" {
				return nil
			}
		}
		return fmt.Errorf("span not found among %d: %+v", len(spans), spans)
	})
}

func TestHAProxyReportsDrain(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)

	h := testenv.StartHAProxy(t, strings.TrimPrefix(backend.URL, "http://"))
	resp, err := http.Get(h.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through HAProxy: %s", resp.Status)
	}

	server := h.Backend + "/" + h.Servers[0]
	if out, err := h.Command("set server " + server + " state drain"); err != nil || out != "" {
		t.Fatalf("set server %s state drain: %q, %v", server, out, err)
	}
	status, err := h.ServerStatus(h.Backend, h.Servers[0])
	if err != nil {
		t.Fatal(err)
	}
	if status != "DRAIN" {
		t.Fatalf("show stat status of %s = %q, want DRAIN", server, status)
	}
}

func TestNodeExporterServesMetrics(t *testing.T) {
	n := testenv.StartNodeExporter(t, "--collector.disable-defaults", "--collector.loadavg")
	resp, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if !bytes.Contains(body, []byte("node_load1 ")) {
		t.Fatalf("node_load1 missing from /metrics:\n%.2000s", body)
	}
}
