package main

import (
	"fmt"
	"strconv"
)

// Alert names of the benchmark's rules, and the healing policies.
const (
	alertCrash = "FaultbenchCrash"   // conventional path only: the exit counter grew
	alert5xx   = "FaultbenchHTTP5xx" // both paths, told apart by the path label

	policyLocalCrash = "local-crash"        // VigilProcessExitedNonZero, a fast-path event alert
	policyLocal5xx   = "local-5xx"          // Vigil's own rule
	policyConvCrash  = "conventional-crash" // via Prometheus and Alertmanager
	policyConv5xx    = "conventional-5xx"   // via Prometheus and Alertmanager
)

// expectedSource is the alert source each policy must see: the local
// policies act on Vigil's own alerts, the conventional ones only on what
// Alertmanager delivered.
var expectedSource = map[string]string{
	policyLocalCrash: "event",
	policyLocal5xx:   "rule",
	policyConvCrash:  "alertmanager",
	policyConv5xx:    "alertmanager",
}

// crashExpr and httpExpr are the rule expressions; the same text runs in
// Prometheus and (5xx) in Vigil's local rules engine.
func crashExpr(window string) string {
	return fmt.Sprintf(`sum by (unit) (increase(vigil_process_exits_total{outcome="error",unit=~"faultbench-crash-.+"}[%s])) > 0`, window)
}

func httpExpr(window string) string {
	return fmt.Sprintf(`sum by (unit) (increase(vigil_http_requests_total{kind="server",status_class="5xx",unit=~"faultbench-web-.+"}[%s])) > 0`, window)
}

// rulesYAML is a Prometheus rule file. The local one holds only the 5xx
// rule: Vigil's local crash detection is its fast-path event alert.
func rulesYAML(group, path, window string) string {
	rule := func(name, expr string) string {
		return fmt.Sprintf("      - alert: %s\n        expr: %s\n        for: 0s\n        labels:\n          path: %s\n", name, strconv.Quote(expr), path)
	}
	out := fmt.Sprintf("groups:\n  - name: %s\n    rules:\n", group) + rule(alert5xx, httpExpr(window))
	if path == "conventional" {
		out += rule(alertCrash, crashExpr(window))
	}
	return out
}

// vigilYAML is Vigil's configuration: eBPF and cgroup collectors, the
// default rule set plus the local 5xx rule every localInterval, the
// Alertmanager webhook behind a bearer token, short-lived event alerts (so
// a workload can fault again a few seconds later), and live healing with
// one webhook policy per path and scenario.
func vigilYAML(s settings, p stack, recvURL, maintenance string) string {
	step := func(policy string) string {
		return fmt.Sprintf("        steps:\n          - action: webhook\n            params: {url: %s}\n", strconv.Quote(recvURL+"/act/"+policy))
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
  evaluation_interval: %s
  rule_files:
    - "embedded:*.rules.yml"
    - %s
  alertmanager_webhook:
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
      - name: %s
        matchers: ['alertname="VigilProcessExitedNonZero"', 'unit=~"faultbench-crash-.+"']
%s      - name: %s
        matchers: ['alertname="%s"', 'path="local"']
%s      - name: %s
        matchers: ['alertname="%s"', 'path="conventional"']
%s      - name: %s
        matchers: ['alertname="%s"', 'path="conventional"']
%s`, s.localInterval, strconv.Quote(p.localRules), strconv.Quote(p.token), strconv.Quote(maintenance),
		policyLocalCrash, step(policyLocalCrash),
		policyLocal5xx, alert5xx, step(policyLocal5xx),
		policyConvCrash, alertCrash, step(policyConvCrash),
		policyConv5xx, alert5xx, step(policyConv5xx))
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
