package rules

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/fuzztest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/internal/event"
)

// FuzzParseRules fuzzes the rule-file decoder, ParseRules: Prometheus rule
// files and PrometheusRule objects (monitoring.coreos.com/v1) with their
// PromQL. Oracle: fuzztest.Bounded (no panic, at most fuzztest.AllocBudget bytes per
// input, no hang) and groups are returned exactly when there is no error.
// Seeds: rules/testdata, the embedded default rules, the examples of
// docs/rules.md and an alias bomb.
func FuzzParseRules(f *testing.F) {
	for _, pat := range []string{"testdata/*.y*ml", "defaults/*.yml", "defaults/*.yaml"} {
		files, _ := filepath.Glob(pat)
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	for _, b := range fuzztest.DocBlocks(f, "../docs/rules.md", "") {
		f.Add(b)
	}
	f.Add(fuzztest.AliasBomb("groups:\n", "{name: g, rules: [{record: a, expr: '1'}]}", "  "))
	f.Add([]byte("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec: {groups: [{name: g, rules: [{alert: A, expr: up == 0}]}]}\n"))
	f.Add([]byte("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec:\n  groups:\n  - name: g\n    rules:\n    - record: r\n      expr: " + hostileQuery + "\n"))
	f.Add([]byte("groups: [{name: g, rules: [{record: r, expr: 'last_over_time(up[70y:1ms])'}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzztest.Bounded(t, data, func() error {
			rgs, errs := ParseRules("fuzz.yaml", data)
			if (rgs == nil) == (len(errs) == 0) {
				return fmt.Errorf("ParseRules returned groups %v and errors %v", rgs, errs)
			}
			return nil
		})
	})
}

// FuzzParseWebhook fuzzes the Alertmanager webhook body decoder,
// ParseWebhook. Oracle: fuzztest.Bounded (no panic, at most fuzztest.AllocBudget
// bytes per input, no hang), alerts exactly when there is no error, no
// more alerts than the body has objects, each with its fingerprint.
func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(fuzzWebhookBody(0, 3)))
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","bad-name":"x"},"startsAt":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":"4","alerts":[null,{},{"status":"resolved","endsAt":"x"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzztest.Bounded(t, body, func() error {
			alerts, err := ParseWebhook(body)
			if err != nil {
				if alerts != nil {
					return fmt.Errorf("ParseWebhook returned %d alerts with the error %v", len(alerts), err)
				}
				return nil
			}
			if n := strings.Count(string(body), "{"); len(alerts) > n {
				return fmt.Errorf("%d alerts from a body with %d objects", len(alerts), n)
			}
			for _, a := range alerts {
				if a.Fingerprint == "" || a.Annotations == nil {
					return fmt.Errorf("alert %v lacks a fingerprint or annotations", a.Labels)
				}
			}
			return nil
		})
	})
}

// The known case of issue 18: one webhook call with 44,000 distinct
// alerts is decoded within the allocation budget and keeps at most
// max_alerts of them.
func TestFuzzRegressionWebhookFlood(t *testing.T) {
	body := []byte(fuzzWebhookBody(0, 44000))
	reg := prometheus.NewRegistry()
	pub := newPublisher(NewStream(), reg)
	pub.setMaxWebhook(100)
	w, err := newWebhook(WebhookConfig{Enabled: true, BearerTokenFile: fuzzTokenFile(t), MaxBodyBytes: 8 << 20, MaxAlerts: 100}, pub, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fuzztest.Bounded(t, body, func() error {
		r := httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(string(body)))
		r.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("answered %d: %s", rec.Code, rec.Body)
		}
		pub.mu.Lock()
		kept := pub.webhookKept
		pub.mu.Unlock()
		if kept > 100 {
			return fmt.Errorf("%d webhook alerts kept, more than max_alerts 100", kept)
		}
		return nil
	})
}

// hostileQuery is the query of issue 18 that took the agent from 155 MB
// to 1.58 GB before the query API had bounds.
const hostileQuery = `last_over_time({__name__=~".+"}[20m:1ms])`

// FuzzQueryParams fuzzes the query API's parameter decoding and
// evaluation (GET /api/v1/query?query=…&time=…, serveQuery) on an engine
// with a few hundred series, bounded at 100,000 samples and 2 s a query.
// Oracle: fuzztest.Bounded (no panic, at most fuzztest.AllocBudget bytes per
// request, no hang) and every answer is 200, 400, 422 or 503. Seeds: the
// hostile query of issue 18, the 70-year subquery it found and ordinary
// ones.
func FuzzQueryParams(f *testing.F) {
	for _, q := range []string{"up", "1", "time()", `sum by (job) (rate(vigil_rules_evaluations_total[1m]))`, hostileQuery,
		`count_over_time({__name__=~".+"}[1h:1ms])`, `label_replace(vector(1), "a", "$1", "b", "(.*)")`, "((((((((1))))))))"} {
		f.Add(q, "")
	}
	f.Add("last_over_time(up[70y:1ms])", "") // 35 TB of step counters before the step bound
	f.Add("1", "1e300")
	f.Add("1", "-9223372036854775808")
	f.Add("1", "NaN")
	f.Add("1", "2026-12-03T07:00:00.123456789Z")
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.EvaluationInterval = 100 * time.Millisecond
	cfg.QueryAPI.MaxSamples = 100_000
	cfg.QueryAPI.Timeout = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	e, err := NewEngine(cfg, Options{Registerer: reg, Gatherer: reg, Events: event.NewBus(), Alerts: NewStream(), Handle: mux.Handle})
	if err != nil {
		f.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	f.Fuzz(func(t *testing.T, query, ts string) {
		form := url.Values{"query": {query}}
		if ts != "" {
			form.Set("time", ts)
		}
		input := []byte(form.Encode())
		fuzztest.Bounded(t, input, func() error {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/query", strings.NewReader(string(input)))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, r)
			switch rec.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusServiceUnavailable:
				return nil
			}
			return fmt.Errorf("answered %d: %s", rec.Code, rec.Body)
		})
	})
}

// FuzzRemoteAnswer fuzzes the decoding of a remote query endpoint's
// answer (remoteEndpoint.query: the Prometheus HTTP API client and the
// conversion to a vector). A test server answers the fuzzed body with a
// fuzzed status. Oracle: fuzztest.Bounded (no panic, at most fuzztest.AllocBudget
// bytes per answer, no hang) and a vector exactly when there is no error.
func FuzzRemoteAnswer(f *testing.F) {
	f.Add(uint8(0), []byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000000,"1"]}]}}`))
	f.Add(uint8(0), []byte(`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}}`))
	f.Add(uint8(0), []byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}`))
	f.Add(uint8(0), []byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"histogram":[1,{"count":"3","sum":"1","buckets":[[0,"0","1","3"]]}]}]}}`))
	f.Add(uint8(1), []byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
	f.Add(uint8(2), []byte(`{"status":"error","errorType":"execution","error":"too many samples"}`))
	f.Add(uint8(3), []byte(`<html>busy</html>`))
	f.Add(uint8(0), []byte(`{}`)) // no result: a nil value, which panicked
	codes := []int{http.StatusOK, http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusServiceUnavailable}
	var mu sync.Mutex
	var answer []byte
	var code int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		b, c := answer, code
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(c)
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fuzz_remote_queries_total", Help: "x"}, []string{"endpoint", "result"})
	rs, err := newRemoteSet([]RemoteQueryConfig{{Name: "fuzz", URL: srv.URL, Groups: []string{".*"}, Timeout: 5 * time.Second}}, counter)
	if err != nil {
		f.Fatal(err)
	}
	ep := rs.forGroup("g")
	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		mu.Lock()
		answer, code = body, codes[int(sel)%len(codes)]
		mu.Unlock()
		fuzztest.Bounded(t, body, func() error {
			v, err := ep.query(context.Background(), "up", time.Unix(1700000000, 0))
			if err == nil && v == nil {
				return errors.New("no vector and no error")
			}
			if err != nil && v != nil {
				return fmt.Errorf("a vector with the error %v", err)
			}
			return nil
		})
	})
}

func fuzzWebhookBody(first, n int) string {
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

func fuzzTokenFile(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
