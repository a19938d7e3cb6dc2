package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"go.uber.org/goleak"

	"github.com/vigil-agent/vigil/agent"
	_ "github.com/vigil-agent/vigil/components"
	"github.com/vigil-agent/vigil/healing"
	"github.com/vigil-agent/vigil/rules"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
		if x < 0 {
			out[i] = missed
		}
	}
	return out
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		name        string
		in          []time.Duration
		acted       int
		median, p99 time.Duration
	}{
		{"odd count", ms(50, 10, 40, 20, 30), 5, 30 * time.Millisecond, 50 * time.Millisecond},
		{"even count takes the lower middle", ms(4, 1, 3, 2), 4, 2 * time.Millisecond, 4 * time.Millisecond},
		{"missed faults are left out", ms(-1, 7, -1, 9, 8), 3, 8 * time.Millisecond, 9 * time.Millisecond},
		{"all missed", ms(-1, -1), 0, 0, 0},
	} {
		s := summarize(c.in)
		if s.faults != len(c.in) || s.acted != c.acted || s.median != c.median || s.p99 != c.p99 {
			t.Errorf("%s: summarize(%v) = %+v, want %d faults, %d acted, median %s, p99 %s", c.name, c.in, s, len(c.in), c.acted, c.median, c.p99)
		}
	}
	// With 200 values 1..200 ms the p99 is the 198th value, not the maximum.
	var many []time.Duration
	for i := 200; i >= 1; i-- {
		many = append(many, time.Duration(i)*time.Millisecond)
	}
	if s := summarize(many); s.median != 100*time.Millisecond || s.p99 != 198*time.Millisecond {
		t.Errorf("1..200 ms: median %s p99 %s, want 100ms and 198ms", s.median, s.p99)
	}
}

func TestRatioAndFormat(t *testing.T) {
	if got := ratio(6*time.Second, 20*time.Millisecond, true); got != "300×" {
		t.Errorf("ratio = %q, want 300×", got)
	}
	if got := ratio(6*time.Second, 500*time.Millisecond, true); got != "12.0×" {
		t.Errorf("ratio = %q, want 12.0×", got)
	}
	if got := ratio(6*time.Second, 0, false); got != "–" {
		t.Errorf("ratio without data = %q, want –", got)
	}
	if got := seconds(420 * time.Millisecond); got != "420 ms" {
		t.Errorf("seconds = %q", got)
	}
	if got := seconds(5576 * time.Millisecond); got != "5.58 s" {
		t.Errorf("seconds = %q", got)
	}
}

// write puts content in dir/name and returns its path.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadVigil writes and loads the benchmark's Vigil configuration with the
// agent's own loader (which also compiles the policies).
func loadVigil(t *testing.T, s settings) (*agent.Config, string) {
	t.Helper()
	dir := t.TempDir()
	p := stack{token: write(t, dir, "token", "secret\n")}
	text := vigilYAML(s, p, "http://127.0.0.1:1", filepath.Join(dir, "maintenance"))
	cfg, err := agent.LoadFile(write(t, dir, "vigil.yaml", text))
	if err != nil {
		t.Fatalf("vigil config: %v\n%s", err, text)
	}
	return cfg, text
}

// The local path runs Vigil's default detection: the configuration the
// benchmark writes loads with the agent's loader and leaves the rule files,
// the evaluation interval and the evidence detector at their defaults.
func TestVigilConfigKeepsDefaultDetection(t *testing.T) {
	cfg, text := loadVigil(t, settings{window: "15s"})
	got, ok := cfg.Sections["rules"].(*rules.Config)
	if !ok {
		t.Fatalf("rules section is %T", cfg.Sections["rules"])
	}
	def := rules.NewConfig()
	if !slices.Equal(got.RuleFiles, def.RuleFiles) {
		t.Errorf("rule_files = %v, want the default %v", got.RuleFiles, def.RuleFiles)
	}
	if got.EvaluationInterval != def.EvaluationInterval {
		t.Errorf("evaluation_interval = %s, want the default %s", got.EvaluationInterval, def.EvaluationInterval)
	}
	if !reflect.DeepEqual(got.Evidence, def.Evidence) || !got.Evidence.Enabled {
		t.Errorf("evidence = %+v, want the defaults %+v", got.Evidence, def.Evidence)
	}
	if !got.EventAlerts.ProcessExit || got.EventAlerts.ResolveAfter != 5*time.Second {
		t.Errorf("event_alerts = %+v, want process exits on, resolve_after 5s", got.EventAlerts)
	}
	if strings.Contains(text, "rule_files") || strings.Contains(text, "for: 0s") {
		t.Errorf("the local path must not get a rule of its own:\n%s", text)
	}
	// -local-interval still sets it when asked.
	cfg, _ = loadVigil(t, settings{window: "15s", localInterval: 250 * time.Millisecond})
	if got := cfg.Sections["rules"].(*rules.Config).EvaluationInterval; got != 250*time.Millisecond {
		t.Errorf("-local-interval 250ms: evaluation_interval = %s", got)
	}
	// A broken policy is refused by the same loader, so this test catches
	// a policy Vigil does not accept.
	bad := strings.Replace(text, "action: webhook", "action: webhok", 1)
	if _, err := agent.Load("bad.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "webhok") {
		t.Errorf("a config with an unknown action loaded: %v", err)
	}
}

// Each policy matches exactly the alerts its path raises: Vigil's default
// alerts (from any of its sources) for the local policies, the Prometheus
// rules' alerts for the others; other default alerts match none.
func TestPoliciesMatchTheirPathsAlerts(t *testing.T) {
	cfg, _ := loadVigil(t, settings{window: "15s"})
	hc, ok := cfg.Sections["healing"].(*healing.Config)
	if !ok {
		t.Fatalf("healing section is %T", cfg.Sections["healing"])
	}
	tree, err := healing.CompilePolicies("vigil.yaml", "healing.policies", &hc.Policies)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"alertname": defaultExited, "unit": "faultbench-crash-0.service"}, policyLocalCrash},
		{map[string]string{"alertname": defaultCrashLooping, "unit": "faultbench-crash-m1.service", "severity": "critical"}, policyLocalCrash},
		{map[string]string{"alertname": default5xx, "unit": "faultbench-web-3.service", "severity": "critical"}, policyLocal5xx},
		{map[string]string{"alertname": alertCrash, "unit": "faultbench-crash-0.service", "path": "conventional"}, policyConvCrash},
		{map[string]string{"alertname": alert5xx, "unit": "faultbench-web-0.service", "path": "conventional"}, policyConv5xx},
		{map[string]string{"alertname": defaultNotAnswering, "unit": "faultbench-hang-2.service", "severity": "critical"}, policyLocalHang},
		{map[string]string{"alertname": alertHang, "unit": "faultbench-hang-0.service", "path": "conventional"}, policyConvHang},
		{map[string]string{"alertname": defaultNotAnswering, "unit": "faultbench-web-0.service"}, ""},
		{map[string]string{"alertname": default5xx, "unit": "faultbench-hang-0.service"}, ""},
		{map[string]string{"alertname": alertHang, "unit": "faultbench-hang-0.service"}, ""},
		{map[string]string{"alertname": alertMixinCrash, "unit": "faultbench-crash-m0.service", "path": "mixin"}, policyMixinCrash},
		{map[string]string{"alertname": alertMixin5xx, "unit": "faultbench-web-m0.service", "path": "mixin"}, policyMixin5xx},
		{map[string]string{"alertname": "VigilWorkloadHighLatency", "unit": "faultbench-web-0.service"}, ""},
		{map[string]string{"alertname": default5xx, "unit": "other.service"}, ""},
	} {
		var got []string
		for _, p := range tree.Match(c.labels) {
			got = append(got, p.Name)
		}
		want := []string{}
		if c.want != "" {
			want = []string{c.want}
		}
		if !slices.Equal(append([]string{}, got...), want) {
			t.Errorf("%v matches policies %v, want %v", c.labels, got, want)
		}
	}
}

// The Prometheus rule file is a valid Prometheus 2.42 rule file with the
// conventional rules (for: 0s) and, unless the mixin path is off, the
// mixin rules with its for: durations; each rule selects only its own
// path's workloads.
func TestPrometheusRules(t *testing.T) {
	for _, c := range []struct {
		mixinRuns int
		want      string
	}{
		{4, "FaultbenchCrash/conventional/0s,FaultbenchHTTP5xx/conventional/0s,FaultbenchHTTPUnanswered/conventional/0s,FaultbenchMixinCrashLooping/mixin/15m,FaultbenchMixinHTTPErrorsHigh/mixin/10m"},
		{0, "FaultbenchCrash/conventional/0s,FaultbenchHTTP5xx/conventional/0s,FaultbenchHTTPUnanswered/conventional/0s"},
	} {
		s := settings{window: "15s", mixinRuns: c.mixinRuns, mixinCrashFor: 15 * time.Minute, mixin5xxFor: 10 * time.Minute}
		f := write(t, t.TempDir(), "prometheus.rules.yml", promRulesYAML(s))
		// Legacy name validation: the Prometheus here is 2.42.
		rg, errs := rulefmt.ParseFile(f, false, model.LegacyValidation, rules.Parser, slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatalf("%v", errs)
		}
		var names []string
		for _, g := range rg.Groups {
			for _, r := range g.Rules {
				names = append(names, r.Alert+"/"+r.Labels["path"]+"/"+r.For.String())
				main := strings.Contains(r.Expr, "-[0-9]+[.]service")
				if main != (r.Labels["path"] == "conventional") {
					t.Errorf("%s selects the wrong workloads: %s", r.Alert, r.Expr)
				}
				if r.Alert == alertHang && !strings.Contains(r.Expr, `vigil_http_server_requests_unanswered_total{unit=~"faultbench-hang-[0-9]+[.]service"}[15s]`) {
					t.Errorf("%s is not on the hang workloads' unanswered counter: %s", r.Alert, r.Expr)
				}
			}
		}
		if got := strings.Join(names, ","); got != c.want {
			t.Errorf("mixin runs %d: rules %s, want %s", c.mixinRuns, got, c.want)
		}
	}
	if got := promDuration(90 * time.Second); got != "90s" {
		t.Errorf("promDuration(90s) = %q", got)
	}
}

// The receiver accepts each policy's own alerts from their own sources and
// lists everything else as unexpected.
func TestReceiverChecksAlertSources(t *testing.T) {
	rc := newReceiver()
	post := func(policy, alertname, source string) {
		body := fmt.Sprintf(`{"policy":%q,"alert":{"labels":{"alertname":%q,"unit":"u"},"annotations":{"evidence_requests":"7","evidence_bad_requests":"7"},"source":%q,"starts_at":"2026-12-04T01:00:00Z"}}`, policy, alertname, source)
		w := httptest.NewRecorder()
		rc.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/act/"+policy, strings.NewReader(body)))
		if w.Code != http.StatusNoContent {
			t.Errorf("%s: status %d", policy, w.Code)
		}
	}
	post(policyLocalCrash, defaultExited, "event")
	post(policyLocalCrash, defaultCrashLooping, "rule")
	post(policyLocal5xx, default5xx, "evidence")
	post(policyLocal5xx, default5xx, "rule")
	post(policyConv5xx, alert5xx, "alertmanager")
	post(policyMixinCrash, alertMixinCrash, "alertmanager")
	post(policyLocalHang, defaultNotAnswering, "evidence")
	post(policyConvHang, alertHang, "alertmanager")
	if bad := rc.unexpected(); len(bad) > 0 {
		t.Fatalf("expected calls flagged: %v", bad)
	}
	if c := rc.calls[2]; c.alert() != default5xx+" (evidence)" || c.evidence() != "7/7" {
		t.Errorf("evidence call: alert %q evidence %q", c.alert(), c.evidence())
	}
	post(policyLocal5xx, default5xx, "alertmanager") // a forwarded copy is not the local path
	post(policyLocalCrash, defaultExited, "rule")
	post(policyConvCrash, defaultExited, "event")
	post("nobody", default5xx, "evidence")
	post(policyLocalHang, default5xx, "evidence") // another scenario's alert
	post(policyConvHang, defaultNotAnswering, "alertmanager")
	if bad := rc.unexpected(); len(bad) != 6 {
		t.Errorf("want 6 unexpected calls, got %d: %v", len(bad), bad)
	}
}

func TestKubeletBackoff(t *testing.T) {
	var got []string
	for n := 1; n <= 8; n++ {
		got = append(got, kubeletBackoff(n).String())
	}
	if want := "10s 20s 40s 1m20s 2m40s 5m0s 5m0s 5m0s"; strings.Join(got, " ") != want {
		t.Errorf("back-offs %v, want %s", got, want)
	}
}

// The report puts the mixin path in the same table with its ratio against
// the local row, and judges issue 19's 5xx goal.
func TestReportMixinRowsAndGoal(t *testing.T) {
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	mk := func(localP99 time.Duration, mixin bool) []*scenario {
		sc := &scenario{name: "5xx", what: "5xx"}
		for i := range 10 {
			l := sec(0.3)
			if i == 9 {
				l = localP99
			}
			sc.results = append(sc.results, result{local: l, conv: sec(8), localDetect: sec(0.2), convDetect: sec(7),
				localAlert: default5xx + " (evidence)", evidence: "7/7"})
		}
		if mixin {
			sc.mixin = []mixinResult{{local: sec(0.3), mixin: sec(610)}, {local: sec(0.4), mixin: sec(620), detail: ""}}
		}
		return []*scenario{sc}
	}
	s := settings{runs: 10, rps: 50, promInterval: 5 * time.Second, window: "15s", timeout: time.Minute,
		mixinRuns: 2, mixinCrashFor: 15 * time.Minute, mixin5xxFor: 10 * time.Minute}
	calls := map[string][]string{policyLocal5xx: {default5xx + " (evidence)", default5xx + " (rule)", default5xx + " (evidence)"}, policyConv5xx: {alert5xx + " (alertmanager)"}}
	md := report{settings: s, scenarios: mk(sec(1), true), calls: calls}.markdown()
	for _, want := range []string{
		"| 5xx | local (Vigil's default detection) | 10 / 10 | 300 ms | 1.00 s | VigilWorkloadHigh5xxRatio (evidence) ×10 |",
		"| 5xx | kubernetes-mixin `for:` (Prometheus 5s, `for: 10m`, Alertmanager) | 2 / 2 | 610.00 s | 620.00 s |",
		"| 5xx | **ratio mixin / local** | | **2033×** | **620×** | |",
		"5 s at p99 at ≥ 20 req/s, with the default configuration: met (p99 1.00 s at 50 req/s)",
		"Evidence at firing (5xx, answers 5xx / requests since the CUSUM left zero): 7/7 ×10.",
		"by policy and alert (source): conventional-5xx: FaultbenchHTTP5xx (alertmanager) ×1; local-5xx: VigilWorkloadHigh5xxRatio (evidence) ×2, VigilWorkloadHigh5xxRatio (rule) ×1.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	s.mixinRuns = 0
	md = report{settings: s, scenarios: mk(sec(6), false)}.markdown()
	if strings.Contains(md, "mixin") {
		t.Errorf("mixin path off, yet the report mentions it:\n%s", md)
	}
	if !strings.Contains(md, "NOT met (p99 6.00 s at 50 req/s)") {
		t.Errorf("a 6 s p99 must miss issue 19's goal:\n%s", md)
	}
	s.rps = 10
	if md := (report{settings: s, scenarios: mk(sec(1), false)}).markdown(); !strings.Contains(md, "not measured (load 10 req/s, below 20)") {
		t.Errorf("10 req/s cannot show the goal:\n%s", md)
	}
}

// The hang rows: local and conventional with their ratio, the mixin path
// shown as having no such alert (not a figure), the steps of the local
// path's time, the evidence, and issue 19's hang goal judged from the
// local p99; issue 11's goals (set for crash and 5xx) leave hang out.
func TestReportHangRowsAndGoal(t *testing.T) {
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	mk := func(localP99 time.Duration) []*scenario {
		sc := &scenario{name: "hang", what: "hang", noMixin: "no such alert in the mixin"}
		for i := range 10 {
			l := sec(3.2)
			if i == 9 {
				l = localP99
			}
			sc.results = append(sc.results, result{local: l, conv: sec(16), localDetect: l - sec(0.1), convDetect: sec(15),
				localSince: sec(2.2), localAlert: defaultNotAnswering + " (evidence)", evidence: "24/24"})
		}
		return []*scenario{sc}
	}
	s := settings{runs: 10, rps: 20, promInterval: 5 * time.Second, window: "15s", timeout: time.Minute,
		mixinRuns: 4, mixinCrashFor: 15 * time.Minute, mixin5xxFor: 10 * time.Minute}
	md := report{settings: s, scenarios: mk(sec(4))}.markdown()
	for _, want := range []string{
		"| hang | local (Vigil's default detection) | 10 / 10 | 3.20 s | 4.00 s | VigilWorkloadNotAnswering (evidence) ×10 |",
		"| hang | conventional (Prometheus 5s, `for: 0s`, Alertmanager) | 10 / 10 | 16.00 s | 16.00 s | FaultbenchHTTPUnanswered (alertmanager) |",
		"| hang | **ratio conventional / local** | | **5.0×** | **4.0×** | |",
		"| hang | kubernetes-mixin | — | — | — | — (no such alert in the mixin) |",
		"a replica that hangs acted on within 5 s at p99 at ≥ 20 req/s, with the default configuration: met (p99 4.00 s at 20 req/s)",
		"a replica answering 5xx acted on within 5 s at p99 at ≥ 20 req/s, with the default configuration: not measured (no 5xx scenario)",
		"| hang | local | 3.10 s / 3.90 s | 100 ms / 100 ms |",
		"`evidence_since`) 2.20 s / 2.20 s; → the CUSUM reaches its threshold (the alert starts) 900 ms / 1.70 s; → the action's call 100 ms / 100 ms.",
		"Evidence at firing (hang, requests unanswered after `http_hang_after` / observations (answers and requests unanswered after it) since the CUSUM left zero): 24/24 ×10.",
		"vigil_http_server_requests_unanswered_total",
		"Hang: none (the mixin has no alert for a replica that hangs while alive).",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Goals of issue 11") || strings.Contains(md, "kubernetes-mixin hang faults") {
		t.Errorf("issue 11's goals and the mixin path's own faults are not about hang:\n%s", md)
	}
	s.mixinRuns = 0
	md = report{settings: s, scenarios: mk(sec(5.3))}.markdown()
	if strings.Contains(md, "kubernetes-mixin") {
		t.Errorf("mixin path off, yet the report has a row for it:\n%s", md)
	}
	if !strings.Contains(md, "a replica that hangs acted on within 5 s at p99 at ≥ 20 req/s, with the default configuration: NOT met (p99 5.30 s at 20 req/s)") {
		t.Errorf("a 5.3 s p99 must miss issue 19's hang goal:\n%s", md)
	}
	sc := mk(sec(4))
	sc[0].results[3].local = missed
	if md := (report{settings: s, scenarios: sc}).markdown(); !strings.Contains(md, "hangs acted on within 5 s at p99 at ≥ 20 req/s, with the default configuration: NOT met (the local path acted on 9 of 10 faults)") {
		t.Errorf("a missed hang fault must miss the goal:\n%s", md)
	}
}
