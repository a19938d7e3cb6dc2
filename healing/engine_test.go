package healing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigil-agent/vigil/internal/confyaml"
	"github.com/vigil-agent/vigil/rules"
)

// harness is a running engine fed through a real alert stream.
type harness struct {
	t      testing.TB
	e      *Engine
	stream *rules.Stream
	reg    *prometheus.Registry
	spans  *spanSink
	dir    string
}

type spanSink struct {
	mu    sync.Mutex
	spans []ptrace.Span
}

func (s *spanSink) consumer() consumer.Traces {
	c, _ := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				for k := 0; k < ss.At(j).Spans().Len(); k++ {
					sp := ptrace.NewSpan()
					ss.At(j).Spans().At(k).CopyTo(sp)
					s.spans = append(s.spans, sp)
				}
			}
		}
		return nil
	})
	return c
}

// testLogger writes the engine's records to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startEngine decodes the healing section from yamlText (with "$DIR"
// replaced by a temporary directory), builds and starts an engine.
func startEngine(t testing.TB, yamlText string, opts ...func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	yamlText = strings.ReplaceAll(yamlText, "$DIR", dir)
	cfg := NewConfig()
	cfg.Kubernetes.Mode = "off"
	cfg.MaintenanceFile = filepath.Join(dir, "maintenance")
	node, err := confyaml.Parse("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	if err := confyaml.Decode("test.yaml", "healing", node, cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, stream: rules.NewStream(), reg: prometheus.NewRegistry(), spans: &spanSink{}, dir: dir}
	o := Options{Logger: testLogger(t), NodeName: "node-a", Registerer: h.reg, Alerts: h.stream, Traces: h.spans.consumer()}
	for _, f := range opts {
		f(&o)
	}
	h.e, err = New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.e.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

func (h *harness) fire(labels map[string]string) {
	h.publish(rules.Alert{Labels: labels, State: rules.StateFiring, Source: rules.SourceRule, StartsAt: time.Now()})
}

func (h *harness) resolve(labels map[string]string) {
	h.publish(rules.Alert{Labels: labels, State: rules.StateResolved, Source: rules.SourceRule, EndsAt: time.Now()})
}

// publish sends an alert on the stream and waits until the engine has
// dispatched it.
func (h *harness) publish(a rules.Alert) {
	h.t.Helper()
	want := h.e.handled.Load() + 1
	h.stream.Publish(a)
	deadline := time.Now().Add(60 * time.Second)
	for h.e.handled.Load() < want {
		if time.Now().After(deadline) {
			h.t.Fatal("the engine did not take the alert")
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRecords polls the history until n records exist (generous deadline
// for a loaded machine) and returns them.
func (h *harness) waitRecords(n int) []Record {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs := h.e.History().Recent(0)
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waited for %d records, have %d: %s", n, len(recs), dump(recs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until no runbook is running, then returns the records.
func (h *harness) settle() []Record {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.e.mu.Lock()
		n := len(h.e.incidents)
		h.e.mu.Unlock()
		if n == 0 {
			return h.e.History().Recent(0)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("runbooks still running: %s", dump(h.e.History().Recent(0)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dump(recs []Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "\n  #%d %s step=%d %s %s %s guard=%s: %s", r.ID, r.Policy, r.Step, r.Action, r.Target, r.Result, r.Guard, r.Reason)
	}
	return b.String()
}

func results(recs []Record) string {
	var s []string
	for _, r := range recs {
		x := string(r.Result)
		if r.Guard != "" && r.Result == ResultVetoed {
			x += "(" + r.Guard + ")"
		}
		s = append(s, x)
	}
	return strings.Join(s, " ")
}

// lines returns the lines the runbook scripts appended to file.
func lines(t *testing.T, file string) []string {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// touchPolicy is a policy whose action appends the alert's "target" label
// to $DIR/acted through a real process.
const touchPolicy = `
    - name: touch
      matchers: ['alertname="Broken"']
      steps:
        - action: exec
          params:
            command: ["/bin/sh", "-c", "echo \"$1\" >> \"$2\"", "sh", "{{.target}}", "$DIR/acted"]
            target: "{{.target}}"
`

func TestExecActsAndAuditsEverywhere(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  runbook_url: https://runbooks.example/broken
  routes:`+touchPolicy)
	h.fire(map[string]string{"alertname": "Broken", "target": "a;rm -rf /tmp/x"})
	recs := h.waitRecords(1)
	r := recs[0]
	if r.Result != ResultSuccess || r.Policy != "touch" || r.Action != "exec" || r.RunbookURL != "https://runbooks.example/broken" {
		t.Fatalf("record: %+v", r)
	}
	// The label went to the program as one argv element, never through a
	// shell of its own.
	if got := lines(t, filepath.Join(h.dir, "acted")); strings.Join(got, " ") != "a;rm -rf /tmp/x" {
		t.Errorf("acted file holds %q", got)
	}
	if got := testutil.ToFloat64(h.e.m.remediations.WithLabelValues("touch", "exec", "success")); got != 1 {
		t.Errorf("vigil_remediations_total{result=success} = %v", got)
	}
	if n := testutil.CollectAndCount(h.e.m.duration); n != 1 {
		t.Errorf("duration histogram series = %d", n)
	}
	if r.AlertStartsAt.IsZero() {
		t.Error("record does not carry the alert's start")
	}
	if n := testutil.CollectAndCount(h.e.m.alertToAct, "vigil_remediation_alert_to_action_seconds"); n != 1 {
		t.Errorf("alert-to-action histogram series = %d, want 1", n)
	}
	h.spans.mu.Lock()
	defer h.spans.mu.Unlock()
	if len(h.spans.spans) != 1 {
		t.Fatalf("spans: %d", len(h.spans.spans))
	}
	sp := h.spans.spans[0]
	pol, _ := sp.Attributes().Get("vigil.policy")
	res, _ := sp.Attributes().Get("vigil.result")
	rb, _ := sp.Attributes().Get("vigil.runbook_url")
	if pol.Str() != "touch" || res.Str() != "success" || rb.Str() != "https://runbooks.example/broken" || sp.TraceID().String() != r.Incident {
		t.Errorf("span: policy=%s result=%s runbook=%s trace=%s incident=%s", pol.Str(), res.Str(), rb.Str(), sp.TraceID(), r.Incident)
	}
}

func TestRunbookEscalatesStepByStepAndStopsWhenResolved(t *testing.T) {
	hook := newHookReceiver(t)
	h := startEngine(t, `
dry_run: false
policies:
  routes:
    - name: runbook
      steps:
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo restart >> $DIR/acted"]}
          verify: {window: 300ms}
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo reroute >> $DIR/acted; echo reroute-out; exit 3"]}
          verify: {window: 1m}
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo scale >> $DIR/acted"]}
          verify: {window: 1m}
        - action: webhook
          params: {url: "`+hook.url+`"}
`)
	labels := map[string]string{"alertname": "Slow", "pod": "p"}
	h.fire(labels)
	h.waitRecords(4) // success, unresolved, failed, success(scale)
	h.fire(labels)   // a repeat while the runbook runs starts nothing new
	h.resolve(labels)
	recs := h.settle()
	if got, want := results(recs), "success unresolved failed success resolved"; got != want {
		t.Fatalf("results %q, want %q%s", got, want, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "restart,reroute,scale" {
		t.Errorf("steps run: %s", got)
	}
	if !strings.Contains(recs[2].Reason, "exit status 3") || !strings.Contains(recs[2].Reason, "output: reroute-out") {
		t.Errorf("failed step reason: %q", recs[2].Reason)
	}
	if hook.count() != 0 {
		t.Errorf("the webhook was called although the alert resolved at step 2")
	}
}

func TestRenderFailureIsAuditedAndTheNextStepRuns(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  routes:
    - name: r
      steps:
        - action: exec
          params: {command: ["/bin/echo", "{{.missing}}"]}
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo second >> $DIR/acted"]}
`)
	h.fire(map[string]string{"alertname": "A"})
	recs := h.settle()
	if len(recs) != 2 || recs[0].Result != ResultFailed || !strings.Contains(recs[0].Reason, `map has no entry for key "missing"`) || recs[1].Result != ResultSuccess {
		t.Fatalf("records:%s", dump(recs))
	}
}

// Each guard test runs the same scenario twice: with the guard's condition
// the action does not happen and the record names the guard; without it
// the same action happens. With the guard removed from Guards, the first
// half fails.

func TestGuardDryRunGlobal(t *testing.T) {
	h := startEngine(t, `
policies:
  routes:`+touchPolicy) // dry_run is the default
	h.fire(map[string]string{"alertname": "Broken", "target": "x"})
	recs := h.settle()
	if results(recs) != "dry_run" || recs[0].Guard != GuardDryRun || !recs[0].DryRun || !strings.Contains(recs[0].Reason, "would exec Command x") {
		t.Fatalf("records:%s", dump(recs))
	}
	if got := lines(t, filepath.Join(h.dir, "acted")); got != nil {
		t.Fatalf("dry-run acted: %v", got)
	}
}

func TestGuardDryRunPolicy(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  routes:
    - name: careful
      dry_run: true
      matchers: ['alertname="Broken"', 'target="dry"']
      steps:
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo careful >> $DIR/acted"]}`+touchPolicy)
	h.fire(map[string]string{"alertname": "Broken", "target": "dry"})
	h.settle()
	h.fire(map[string]string{"alertname": "Broken", "target": "live"})
	recs := h.settle()
	if results(recs) != "dry_run success" || recs[0].Policy != "careful" {
		t.Fatalf("records:%s", dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "live" {
		t.Fatalf("acted: %s", got)
	}
}

func TestGuardCooldown(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  cooldown: 1h
  routes:`+touchPolicy)
	// Two alerts (different fingerprints) about the same target: the
	// second comes within the cooldown.
	h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "a"})
	h.settle()
	h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "b"})
	h.settle()
	// Another target is not cooling down.
	h.fire(map[string]string{"alertname": "Broken", "target": "t2"})
	recs := h.settle()
	if got := results(recs); got != "success vetoed(cooldown) success" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "t1,t2" {
		t.Fatalf("acted: %s", got)
	}
	if got := testutil.ToFloat64(h.e.m.vetoes.WithLabelValues("touch", "cooldown")); got != 1 {
		t.Errorf("vigil_remediation_vetoes_total{guard=cooldown} = %v", got)
	}
}

func TestGuardRateLimit(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  rate_limit: {max: 2, per: 1h}
  routes:`+touchPolicy)
	for _, target := range []string{"a", "b", "c"} {
		h.fire(map[string]string{"alertname": "Broken", "target": target})
		h.settle()
	}
	recs := h.settle()
	if got := results(recs); got != "success success vetoed(rate_limit)" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "a,b" {
		t.Fatalf("acted: %s", got)
	}
}

func TestGuardNodeRateLimit(t *testing.T) {
	h := startEngine(t, `
dry_run: false
node_rate_limit: {max: 1, per: 1h}
policies:
  routes:
    - name: other
      matchers: ['alertname="Other"']
      steps:
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo other >> $DIR/acted"]}`+touchPolicy)
	h.fire(map[string]string{"alertname": "Other"})
	h.settle()
	h.fire(map[string]string{"alertname": "Broken", "target": "a"})
	recs := h.settle()
	if got := results(recs); got != "success vetoed(node_rate_limit)" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "other" {
		t.Fatalf("acted: %s", got)
	}
}

func TestGuardMaintenanceFile(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  routes:`+touchPolicy)
	maint := filepath.Join(h.dir, "maintenance")
	if err := os.WriteFile(maint, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.fire(map[string]string{"alertname": "Broken", "target": "a"})
	h.settle()
	os.Remove(maint)
	h.fire(map[string]string{"alertname": "Broken", "target": "b"})
	recs := h.settle()
	if got := results(recs); got != "vetoed(maintenance) success" || !strings.Contains(recs[0].Reason, "maintenance file") {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "b" {
		t.Fatalf("acted: %s", got)
	}
}

// flakyRoutes is a policy whose only step always fails, with a circuit
// breaker that opens after two failures and an escalation webhook at
// hookURL; extra adds guard lines to the route.
func flakyRoutes(hookURL, extra string) string {
	return `
dry_run: false
policies:
  routes:
    - name: flaky
` + extra + `      circuit_breaker: {failures: 2, reset_after: 1h}
      escalate:
        action: webhook
        params: {url: "` + hookURL + `"}
      steps:
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo try >> $DIR/acted; exit 1"]}
`
}

// fireFlaky fires the alert of three targets one after another and
// returns the records.
func fireFlaky(h *harness) []Record {
	for _, target := range []string{"a", "b", "c"} {
		h.fire(map[string]string{"alertname": "Flaky", "target": target})
		h.settle()
	}
	return h.settle()
}

func TestGuardCircuitBreakerEscalates(t *testing.T) {
	hook := newHookReceiver(t)
	h := startEngine(t, flakyRoutes(hook.url, ""))
	recs := fireFlaky(h)
	// Each failed runbook escalates once; the third alert finds the breaker
	// open and escalates without acting.
	if got := results(recs); got != "failed success failed success vetoed(circuit_breaker) success" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if n := len(lines(t, filepath.Join(h.dir, "acted"))); n != 2 {
		t.Fatalf("the failing action ran %d times, want 2", n)
	}
	if hook.count() != 3 {
		t.Fatalf("webhook calls: %d", hook.count())
	}
	last := hook.last()
	if last.Policy != "flaky" || !strings.Contains(last.Reason, "circuit breaker open") || len(last.Tried) != 1 || last.Tried[0].Guard != GuardCircuitBreaker {
		t.Errorf("escalation payload: %+v", last)
	}
	first := hook.first()
	if len(first.Tried) != 1 || first.Tried[0].Result != ResultFailed || first.Alert.Labels["target"] != "a" {
		t.Errorf("first escalation payload: %+v", first)
	}
	// The payload's keys as a receiver written in any language sees them:
	// snake_case like the audit records.
	var payload struct {
		Alert map[string]json.RawMessage `json:"alert"`
	}
	hook.mu.Lock()
	raw := hook.raw[0]
	hook.mu.Unlock()
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"labels", "state", "source", "starts_at"} {
		if _, ok := payload.Alert[k]; !ok {
			t.Errorf("escalation payload's alert has no %q key: %s", k, raw)
		}
	}
	if !strings.Contains(string(payload.Alert["labels"]), `"target":"a"`) {
		t.Errorf("escalation payload's alert labels: %s", payload.Alert["labels"])
	}
}

// TestRateLimitIgnoresEscalations: escalations notify people; they do not
// use up a policy's rate limit, so the circuit breaker, not the limit, is
// what stops a policy whose actions keep failing.
func TestRateLimitIgnoresEscalations(t *testing.T) {
	hook := newHookReceiver(t)
	h := startEngine(t, flakyRoutes(hook.url, "      rate_limit: {max: 3, per: 1h}\n"))
	recs := fireFlaky(h)
	if got := results(recs); got != "failed success failed success vetoed(circuit_breaker) success" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
}

type hookReceiver struct {
	url  string
	mu   sync.Mutex
	got  []Escalation
	raw  [][]byte
	auth []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Escalation
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &e); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, e)
		h.raw = append(h.raw, b)
		h.auth = append(h.auth, r.Header.Get("Authorization"))
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/hook"
	return h
}

func (h *hookReceiver) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.got) }
func (h *hookReceiver) last() Escalation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[len(h.got)-1]
}
func (h *hookReceiver) first() Escalation { h.mu.Lock(); defer h.mu.Unlock(); return h.got[0] }

// An alert re-sent at every evaluation is decided once per
// repeat_interval while its runbook does not act, and again at once after
// it resolved.
func TestRepeatIntervalQuietsResentAlerts(t *testing.T) {
	h := startEngine(t, `
policies:
  routes:`+touchPolicy) // dry-run
	labels := map[string]string{"alertname": "Broken", "target": "a"}
	h.fire(labels)
	h.settle()
	h.fire(labels)
	h.fire(labels)
	h.settle()
	if got := results(h.e.History().Recent(0)); got != "dry_run" {
		t.Fatalf("results %q", got)
	}
	h.resolve(labels)
	h.fire(labels)
	if got := results(h.settle()); got != "dry_run dry_run" {
		t.Fatalf("after resolve: %q", got)
	}
}

// A notification's cooldown is kept per alert and receiver: pages about
// two different alerts to the one pager both go out (the cooldown is per
// target, and a webhook's target is its receiver), while the same alert
// firing again within the cooldown is not paged twice.
func TestCooldownOfNotificationsIsPerAlert(t *testing.T) {
	hook := newHookReceiver(t)
	h := startEngine(t, `
dry_run: false
policies:
  cooldown: 1h
  routes:
    - name: page-slow
      matchers: ['alertname="Slow"']
      steps: [{action: webhook, params: {url: "`+hook.url+`"}}]
    - name: page-errors
      matchers: ['alertname="Errors"']
      steps: [{action: webhook, params: {url: "`+hook.url+`"}}]
`)
	errs := map[string]string{"alertname": "Errors", "namespace": "a"}
	h.fire(errs)
	h.settle()
	h.fire(map[string]string{"alertname": "Slow", "namespace": "b"})
	h.settle()
	h.resolve(errs)
	h.fire(errs)
	recs := h.settle()
	if got := results(recs); got != "success success vetoed(cooldown)" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if r := recs[2]; !strings.Contains(r.Reason, "was notified of this alert") || r.Policy != "page-errors" {
		t.Errorf("veto: %+v", r)
	}
	if n := hook.count(); n != 2 {
		t.Fatalf("the receiver got %d notifications, want 2", n)
	}
	if a := hook.last().Alert.Labels["alertname"]; a != "Slow" {
		t.Errorf("last notification about %q, want Slow", a)
	}
}
