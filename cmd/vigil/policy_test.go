package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// faultTraffic is 35 minutes of what Vigil's eBPF collector exports for
// two replicas of shop/web serving 20 requests a second each (counters
// every 5 s): web-a answers only 5xx from minute 10 to 16 and again from
// minute 20 to 26; web-b answers 2xx throughout. It is written with the
// exporter's own label set, so the embedded default rules read it.
type sample struct {
	labels map[string]string
	t      time.Time
	v      float64
}

func faultTraffic(start time.Time) []sample {
	var out []sample
	series := func(pod, class string) map[string]string {
		return map[string]string{"__name__": "vigil_http_requests_total", "namespace": "shop", "pod": pod, "container": "web",
			"kind": "server", "method": "GET", "route": "/", "status_class": class}
	}
	var a2, a5, b2 float64
	for i := 0; i <= 35*12; i++ {
		t := start.Add(time.Duration(i) * 5 * time.Second)
		m := float64(i) / 12 // minutes
		if (m >= 10 && m < 16) || (m >= 20 && m < 26) {
			a5 += 100
		} else {
			a2 += 100
		}
		b2 += 100
		out = append(out, sample{series("web-a", "2xx"), t, a2}, sample{series("web-a", "5xx"), t, a5}, sample{series("web-b", "2xx"), t, b2})
	}
	return out
}

// remoteWrite sends the samples to Prometheus's remote-write receiver.
func remoteWrite(t *testing.T, url string, samples []sample) {
	t.Helper()
	byKey := map[string]*prompb.TimeSeries{}
	var order []string
	for _, s := range samples {
		k := fmt.Sprint(s.labels)
		ts, ok := byKey[k]
		if !ok {
			ts = &prompb.TimeSeries{}
			labels.FromMap(s.labels).Range(func(l labels.Label) {
				ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value})
			})
			byKey[k] = ts
			order = append(order, k)
		}
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: s.t.UnixMilli(), Value: s.v})
	}
	var wr prompb.WriteRequest
	for _, k := range order {
		wr.Timeseries = append(wr.Timeseries, *byKey[k])
	}
	raw, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("remote write: %s", resp.Status)
	}
}

// writeTSDB writes the samples into a new TSDB in dir.
func writeTSDB(t *testing.T, dir string, samples []sample) {
	t.Helper()
	db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	app := db.Appender(context.Background())
	for _, s := range samples {
		if _, err := app.Append(0, labels.FromMap(s.labels), s.t.UnixMilli(), s.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

const backtestConfig = `
healing:
  dry_run: false
  policies:
    cooldown: 30m
    routes:
      # A candidate policy shadows the live one: before it, it never ends
      # matching (docs/healing.md).
      - name: errors-candidate
        shadow: true
        matchers: ['alertname="VigilWorkloadHigh5xxRatio"']
        steps:
          - action: delete_pod
            params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
      - name: errors
        matchers: ['alertname="VigilWorkloadHigh5xxRatio"']
        steps:
          - action: reroute_readiness
            params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
            verify: {window: 3m}
`

// TestPolicyBacktest: recorded fault traffic in a real Prometheus (through
// its remote-write receiver) and in a TSDB directory; vigil policy
// backtest with the embedded default rules and an SRE's policies reports
// the 5xx alert of web-a twice (none for web-b), the would-be reroute of
// web-a the first time, the cooldown's veto the second, and the shadow
// policy's would-be delete, as a table and as JSON.
func TestPolicyBacktest(t *testing.T) {
	start := time.Now().Add(-40 * time.Minute).Truncate(time.Minute)
	traffic := faultTraffic(start)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfg, []byte(backtestConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	from, to := start.Format(time.RFC3339), start.Add(35*time.Minute).Format(time.RFC3339)

	sources := map[string][]string{}
	if !testing.Short() {
		prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{RemoteWriteReceiver: true})
		remoteWrite(t, prom.URL, traffic)
		sources["prometheus"] = []string{"--prometheus", prom.URL}
	}
	tsdbDir := filepath.Join(dir, "tsdb")
	writeTSDB(t, tsdbDir, traffic)
	sources["tsdb"] = []string{"--tsdb", tsdbDir}

	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"policy", "backtest", "--config", cfg, "--from", from, "--to", to, "-o", "json"}, src...)
			if code := Main(args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			var rep backtestReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			var fired []time.Time
			for _, a := range rep.Alerts {
				if a.Name() != "VigilWorkloadHigh5xxRatio" {
					continue
				}
				if a.Labels["pod"] != "web-a" {
					t.Errorf("alert for %s: %v", a.Labels["pod"], a.Labels)
				}
				fired = append(fired, a.StartsAt)
			}
			if len(fired) != 2 {
				t.Fatalf("5xx alerts fired at %v, want 2 (alerts %+v)", fired, rep.Alerts)
			}
			for i, faultAt := range []time.Time{start.Add(10 * time.Minute), start.Add(20 * time.Minute)} {
				// for: 1m after the 2m rate first crosses 5 %.
				if d := fired[i].Sub(faultAt); d < time.Minute || d > 3*time.Minute {
					t.Errorf("alert %d fired %s after its fault, want within for: 1m plus the 2m rate window", i, d)
				}
			}
			var got []string
			for _, d := range rep.Decisions {
				got = append(got, fmt.Sprintf("%s %s %s %s %s", d.Policy, d.Action, d.Target, d.Result, d.Guard))
			}
			want := []string{
				"errors-candidate delete_pod Pod shop/web-a shadow shadow",
				"errors reroute_readiness Pod shop/web-a would_act ",
				"errors-candidate delete_pod Pod shop/web-a vetoed cooldown",
				"errors reroute_readiness Pod shop/web-a vetoed cooldown",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("decisions:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			out.Reset()
			if code := Main(append([]string{"policy", "backtest", "--config", cfg, "--from", from, "--to", to}, src...), &out, &errb); code != 0 {
				t.Fatalf("table: exit %d: %s", code, errb.String())
			}
			for _, w := range []string{"VigilWorkloadHigh5xxRatio", "would_act", "vetoed by cooldown: Pod shop/web-a was acted on", "Not evaluated"} {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, out.String())
				}
			}
			t.Logf("table:\n%s", out.String())
		})
	}
}

func TestPolicyBacktestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"policy", "backtest"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "exactly one of --prometheus") {
		t.Errorf("no source: exit %d, %s", code, errb.String())
	}
	if code := Main([]string{"policy", "backtest", "--tsdb", t.TempDir(), "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "is not before --to") {
		t.Errorf("reversed range: exit %d, %s", code, errb.String())
	}
}
