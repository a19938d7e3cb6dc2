package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Alert names of the benchmark's Prometheus rules. The local path has no
// rule of its own: it runs Vigil's default configuration.
const (
	alertCrash      = "FaultbenchCrash"               // conventional: the exit counter grew, for: 0s
	alert5xx        = "FaultbenchHTTP5xx"             // conventional: the 5xx counter grew, for: 0s
	alertHang       = "FaultbenchHTTPUnanswered"      // conventional: the unanswered counter grew, for: 0s
	alertMixinCrash = "FaultbenchMixinCrashLooping"   // kubernetes-mixin's KubePodCrashLooping, for: 15m
	alertMixin5xx   = "FaultbenchMixinHTTPErrorsHigh" // kubernetes-mixin's KubeAPIErrorsHigh, for: 10m
)

// The healing policies, one per path and scenario.
const (
	policyLocalCrash = "local-crash"        // Vigil's default crash alerts
	policyLocal5xx   = "local-5xx"          // Vigil's default 5xx alert (evidence or rule)
	policyConvCrash  = "conventional-crash" // via Prometheus (for: 0s) and Alertmanager
	policyConv5xx    = "conventional-5xx"   // via Prometheus (for: 0s) and Alertmanager
	policyLocalHang  = "local-hang"         // Vigil's default not-answering alert (evidence or rule)
	policyConvHang   = "conventional-hang"  // via Prometheus (for: 0s) and Alertmanager
	policyMixinCrash = "mixin-crash"        // via Prometheus (the mixin's for:) and Alertmanager
	policyMixin5xx   = "mixin-5xx"          // via Prometheus (the mixin's for:) and Alertmanager
)

// Vigil's default alerts the local policies act on.
const (
	defaultExited       = "VigilProcessExitedNonZero" // fast-path event alert
	defaultCrashLooping = "VigilWorkloadCrashLooping" // rule, 3 failed exits in 5 minutes
	default5xx          = "VigilWorkloadHigh5xxRatio" // evidence detector, or the rule after its for: 1m
	defaultNotAnswering = "VigilWorkloadNotAnswering" // evidence detector, or the rule after its for: 1m
)

// expectedSources says, for each policy, which alerts it may act on and
// from which sources: the local policies act only on Vigil's own default
// alerts (a crash's event alert or the crash-loop rule; the 5xx and the
// not-answering alerts from the evidence detector or from the rule file),
// the others only on what
// Alertmanager delivered. A policy acting on anything else would make its
// figures meaningless, and the receiver fails the run.
var expectedSources = map[string]map[string][]string{
	policyLocalCrash: {defaultExited: {"event"}, defaultCrashLooping: {"rule"}},
	policyLocal5xx:   {default5xx: {"evidence", "rule"}},
	policyLocalHang:  {defaultNotAnswering: {"evidence", "rule"}},
	policyConvCrash:  {alertCrash: {"alertmanager"}},
	policyConv5xx:    {alert5xx: {"alertmanager"}},
	policyConvHang:   {alertHang: {"alertmanager"}},
	policyMixinCrash: {alertMixinCrash: {"alertmanager"}},
	policyMixin5xx:   {alertMixin5xx: {"alertmanager"}},
}

// checkSource says why a call of policy about alertname from source is not
// expected, or "" when it is.
func checkSource(policy, alertname, source string) string {
	alerts, ok := expectedSources[policy]
	if !ok {
		return fmt.Sprintf("call from unknown policy %q", policy)
	}
	if want, ok := alerts[alertname]; !ok || !slices.Contains(want, source) {
		return fmt.Sprintf("policy %s acted on %s from source %q, want one of %s", policy, alertname, source, expectedList(alerts))
	}
	return ""
}

func expectedList(alerts map[string][]string) string {
	var out []string
	for name, srcs := range alerts {
		out = append(out, name+" ("+strings.Join(srcs, " or ")+")")
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// Unit names: the main workloads are faultbench-crash-N,
// faultbench-web-N and faultbench-hang-N, the mixin path's own ones
// faultbench-crash-mN and faultbench-web-mN (each Prometheus rule selects
// only its own; Vigil's local policies act on them all). The hang
// scenario has no mixin workloads: the mixin has no alert for it.
const (
	mainCrashUnits  = `faultbench-crash-[0-9]+[.]service`
	mainWebUnits    = `faultbench-web-[0-9]+[.]service`
	mainHangUnits   = `faultbench-hang-[0-9]+[.]service`
	mixinCrashUnits = `faultbench-crash-m[0-9]+[.]service`
	mixinWebUnits   = `faultbench-web-m[0-9]+[.]service`
)

// crashExpr and httpExpr are the conventional path's rules.
func crashExpr(window string) string {
	return fmt.Sprintf(`sum by (unit) (increase(vigil_process_exits_total{outcome="error",unit=~"%s"}[%s])) > 0`, mainCrashUnits, window)
}

func httpExpr(window string) string {
	return fmt.Sprintf(`sum by (unit) (increase(vigil_http_requests_total{kind="server",status_class="5xx",unit=~"%s"}[%s])) > 0`, mainWebUnits, window)
}

// hangExpr is the conventional path's rule for a replica that hangs, on
// the counter of requests still unanswered http_unanswered_after (10 s by
// default) after they were read: it cannot see a hang sooner than that.
func hangExpr(window string) string {
	return fmt.Sprintf(`sum by (unit) (increase(vigil_http_server_requests_unanswered_total{unit=~"%s"}[%s])) > 0`, mainHangUnits, window)
}

// mixinCrashExpr is kubernetes-mixin's KubePodCrashLooping on Vigil's
// metrics. The mixin's rule (for: 15m in every version) is
// `max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"}[5m]) >= 1`
// today and was `increase(kube_pod_container_status_restarts_total[10m]) > 0
// and kube_pod_container_status_waiting == 1` before; Vigil has no waiting
// reason, so this is the earlier form's restart count, with its 10m
// window, on the failed exits (kubelet's back-off between restarts reaches
// 5 minutes, so a 5m window of exits would lapse between two of them).
func mixinCrashExpr() string {
	return fmt.Sprintf(`sum by (unit) (increase(vigil_process_exits_total{outcome="error",unit=~"%s"}[10m])) > 0`, mixinCrashUnits)
}

// mixinHTTPExpr is kubernetes-mixin's last 5xx-ratio alert,
// KubeAPIErrorsHigh (warning: 5xx above 5 % of requests over 5m, for: 10m;
// removed in 2020 for the API server's SLO burn-rate alerts), on Vigil's
// per-workload HTTP counters.
func mixinHTTPExpr() string {
	return fmt.Sprintf(`sum by (unit) (rate(vigil_http_requests_total{kind="server",status_class="5xx",unit=~"%[1]s"}[5m]))`+
		` / sum by (unit) (rate(vigil_http_requests_total{kind="server",unit=~"%[1]s"}[5m])) > 0.05`, mixinWebUnits)
}

// promRulesYAML is Prometheus's rule file: the conventional path's rules
// (for: 0s) and, when the mixin path runs, its rules with the mixin's for:.
func promRulesYAML(s settings) string {
	rule := func(name, expr string, forDur time.Duration, path string) string {
		return fmt.Sprintf("      - alert: %s\n        expr: %s\n        for: %s\n        labels:\n          path: %s\n",
			name, strconv.Quote(expr), promDuration(forDur), path)
	}
	out := "groups:\n  - name: faultbench-conventional\n    rules:\n" +
		rule(alertCrash, crashExpr(s.window), 0, "conventional") +
		rule(alert5xx, httpExpr(s.window), 0, "conventional") +
		rule(alertHang, hangExpr(s.window), 0, "conventional")
	if s.mixinRuns > 0 {
		out += "  - name: faultbench-mixin\n    rules:\n" +
			rule(alertMixinCrash, mixinCrashExpr(), s.mixinCrashFor, "mixin") +
			rule(alertMixin5xx, mixinHTTPExpr(), s.mixin5xxFor, "mixin")
	}
	return out
}

// promDuration writes d as a Prometheus duration (15m, 90s, 0s).
func promDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// vigilYAML is Vigil's configuration. Detection is Vigil's default: no
// rule_files (the embedded default rule set), the default evaluation
// interval unless -local-interval sets one, rules.evidence at its defaults.
// What the benchmark sets: the collectors it needs (eBPF and cgroup, the
// others off), the Alertmanager webhook behind a bearer token (the other
// paths' way in), event_alerts.resolve_after 5s (so a workload's next
// crash a few seconds later is a new alert; it changes nothing about when
// an alert fires), and live healing with one webhook policy per path and
// scenario.
func vigilYAML(s settings, p stack, recvURL, maintenance string) string {
	route := func(policy string, matchers ...string) string {
		return fmt.Sprintf("      - name: %s\n        matchers: [%s]\n        steps:\n          - action: webhook\n            params: {url: %s}\n",
			policy, strings.Join(matchers, ", "), strconv.Quote(recvURL+"/act/"+policy))
	}
	q := func(m string) string { return "'" + m + "'" }
	interval := ""
	if s.localInterval > 0 {
		interval = "  evaluation_interval: " + s.localInterval.String() + "\n"
	}
	return fmt.Sprintf(`log:
  level: info
collectors:
  ebpf:
    enabled: true
  cgroup:
    enabled: true
  host:
    enabled: false
  logs:
    enabled: false
  kube:
    enabled: false
rules:
%s  alertmanager_webhook:
    enabled: true
    bearer_token_file: %s
  event_alerts:
    resolve_after: 5s
healing:
  enabled: true
  dry_run: false
  maintenance_file: %s
  kubernetes:
    mode: "off"
  policies:
    routes:
`, interval, strconv.Quote(p.token), strconv.Quote(maintenance)) +
		route(policyLocalCrash, q(`alertname=~"`+defaultExited+"|"+defaultCrashLooping+`"`), q(`unit=~"faultbench-crash-.+"`)) +
		route(policyLocal5xx, q(`alertname="`+default5xx+`"`), q(`unit=~"faultbench-web-.+"`)) +
		route(policyLocalHang, q(`alertname="`+defaultNotAnswering+`"`), q(`unit=~"faultbench-hang-.+"`)) +
		route(policyConvCrash, q(`alertname="`+alertCrash+`"`), q(`path="conventional"`)) +
		route(policyConv5xx, q(`alertname="`+alert5xx+`"`), q(`path="conventional"`)) +
		route(policyConvHang, q(`alertname="`+alertHang+`"`), q(`path="conventional"`)) +
		route(policyMixinCrash, q(`alertname="`+alertMixinCrash+`"`), q(`path="mixin"`)) +
		route(policyMixin5xx, q(`alertname="`+alertMixin5xx+`"`), q(`path="mixin"`))
}

// alertmanagerYAML routes every alert on its own (group_by: ['...']) to
// Vigil's webhook, 1 s after it arrives, with the bearer token.
func alertmanagerYAML(vigilURL, tokenFile string) string {
	return fmt.Sprintf(`route:
  receiver: vigil
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: vigil
    webhook_configs:
      - url: %s
        send_resolved: true
        http_config:
          authorization:
            credentials_file: %s
`, strconv.Quote(vigilURL+"/api/v1/alertmanager"), strconv.Quote(tokenFile))
}
