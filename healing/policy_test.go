package healing

import (
	"strings"
	"testing"
)

func TestPolicyLoadErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // substrings of the error, each must appear
	}{
		{"unknown action", `
policies:
  routes:
    - name: p
      steps:
        - action: reboot_the_world
`, []string{"p.yaml:6:19: policies.routes[0].steps[0].action: unknown action \"reboot_the_world\"", "known: cordon, delete_pod"}},
		{"unknown parameter", `
policies:
  routes:
    - name: p
      steps:
        - action: delete_pod
          params: {namespace: a, pod: b, podd: c}
`, []string{"p.yaml:7:48: policies.routes[0].steps[0].params.podd: unknown parameter for action delete_pod (known: namespace, pod, grace_period)"}},
		{"missing parameter", `
policies:
  routes:
    - name: p
      steps:
        - action: scale
          params: {namespace: a, name: b}
`, []string{"policies.routes[0].steps[0].params.max: missing required parameter for action scale"}},
		{"unknown field", `
policies:
  routes:
    - name: p
      matcher: ['a="b"']
`, []string{"p.yaml:5:7: policies.routes[0].matcher: unknown field (did you mean \"matchers\"?)"}},
		{"chained template", `
policies:
  routes:
    - name: p
      steps:
        - action: delete_pod
          params: {namespace: "{{.labels.namespace}}", pod: b}
`, []string{"params.namespace: template \"{{.labels.namespace}}\": labels are strings; .labels.namespace cannot resolve"}},
		{"whole label set", `
policies:
  routes:
    - name: p
      steps:
        - action: delete_pod
          params: {namespace: "{{.}}", pod: b}
`, []string{"{{.}} is the whole label set"}},
		{"label forced absent", `
policies:
  routes:
    - name: p
      matchers: ['pod=""']
      steps:
        - action: delete_pod
          params: {namespace: a, pod: "{{.pod}}"}
`, []string{"template refers to label \"pod\", which this policy's matchers require to be absent"}},
		{"label forced absent by parent", `
policies:
  matchers: ['pod!~".+"']
  routes:
    - name: p
      steps:
        - action: delete_pod
          params: {namespace: a, pod: "{{.pod}}"}
`, []string{"label \"pod\", which this policy's matchers require to be absent"}},
		{"template syntax", `
policies:
  routes:
    - name: p
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace", pod: b}
`, []string{"params.namespace: template: "}},
		{"unknown function", `
policies:
  routes:
    - name: p
      steps:
        - action: delete_pod
          params: {namespace: "{{ upper .namespace }}", pod: b}
`, []string{"function \"upper\" not defined"}},
		{"static value checked", `
policies:
  routes:
    - name: p
      steps:
        - action: scale
          params: {namespace: a, name: b, max: many}
`, []string{"params.max: must be an integer, got \"many\""}},
		{"list where string expected", `
policies:
  routes:
    - name: p
      steps:
        - action: exec
          params: {command: "/bin/true"}
`, []string{"params.command: must be a list of strings"}},
		{"bad matcher", `
policies:
  routes:
    - name: p
      matchers: ['alertname=~"(unclosed"']
      steps: [{action: cordon, params: {node: n}}]
`, []string{"p.yaml:5:18: policies.routes[0].matchers[0]: invalid matcher"}},
		{"duplicate name and no name", `
policies:
  routes:
    - name: p
      steps: [{action: cordon, params: {node: n}}]
    - name: p
      steps: [{action: cordon, params: {node: n}}]
    - steps: [{action: cordon, params: {node: n}}]
`, []string{"policies.routes[1].name: duplicate policy name \"p\"", "policies.routes[2].name: a route with steps is a policy and needs a name"}},
		{"breaker without escalation", `
policies:
  routes:
    - name: p
      circuit_breaker: {failures: 2, reset_after: 1h}
      steps: [{action: cordon, params: {node: n}}]
`, []string{"a circuit breaker needs an escalate step"}},
		{"missing root key", `
routes: []
`, []string{"p.yaml:2:1: routes: unknown field"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePolicies("p.yaml", []byte(c.doc))
			if err == nil {
				t.Fatalf("policy accepted, want an error containing %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

const treeDoc = `
policies:
  cooldown: 10m
  runbook_url: https://runbooks.example/root
  routes:
    - name: crashloop
      matchers: ['alertname="KubePodCrashLooping"', 'namespace=~"prod-.*"']
      continue: true
      steps:
        - action: rollout_restart
          params: {namespace: "{{.namespace}}", name: "{{.deployment}}"}
          verify: {window: 5m}
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: '{{index . "pod"}}'}
    - name: page
      matchers: ['severity="critical"']
      runbook_url: https://runbooks.example/page
      dry_run: true
      steps:
        - action: webhook
          params: {url: "https://pager.example/hook"}
    - matchers: ['team="db"']
      routes:
        - name: db-restart
          steps: [{action: systemd_restart, params: {unit: "{{.unit}}", units: ["db-*.service"]}}]
    - name: fallback
      steps: [{action: webhook, params: {url: "https://chat.example/hook"}}]
`

func names(ps []*Policy) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name)
	}
	return strings.Join(s, ",")
}

func TestPolicyMatching(t *testing.T) {
	tree, err := ParsePolicies("tree.yaml", []byte(treeDoc))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		labels map[string]string
		want   string
	}{
		// continue: crashloop matched, matching goes on to page.
		{map[string]string{"alertname": "KubePodCrashLooping", "namespace": "prod-a", "severity": "critical"}, "crashloop,page"},
		// first match wins without continue.
		{map[string]string{"alertname": "X", "severity": "critical", "team": "db"}, "page"},
		// != namespace regex: crashloop does not match; nothing else: fallback.
		{map[string]string{"alertname": "KubePodCrashLooping", "namespace": "dev"}, "fallback"},
		// a child of a step-less route.
		{map[string]string{"alertname": "Y", "team": "db", "unit": "pg.service"}, "db-restart"},
	}
	for _, c := range cases {
		if got := names(tree.Match(c.labels)); got != c.want {
			t.Errorf("Match(%v) = %q, want %q", c.labels, got, c.want)
		}
	}
	byName := map[string]*Policy{}
	for _, p := range tree.Policies {
		byName[p.Name] = p
	}
	// Inheritance: cooldown and runbook from the root unless overridden.
	if p := byName["crashloop"]; p.Cooldown.Minutes() != 10 || p.RunbookURL != "https://runbooks.example/root" || p.DryRun {
		t.Errorf("crashloop inherited cooldown=%s runbook=%q dry_run=%v", p.Cooldown, p.RunbookURL, p.DryRun)
	}
	if p := byName["page"]; p.RunbookURL != "https://runbooks.example/page" || !p.DryRun {
		t.Errorf("page: runbook=%q dry_run=%v", p.RunbookURL, p.DryRun)
	}
	args, err := byName["crashloop"].Steps[1].Render(map[string]string{"namespace": "prod-a", "pod": "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	if args.Str("namespace") != "prod-a" || args.Str("pod") != "web-1" {
		t.Errorf("rendered %v", args)
	}
	// A label the alert lacks is a render error, not a panic or an empty value.
	if _, err := byName["crashloop"].Steps[0].Render(map[string]string{"namespace": "prod-a"}); err == nil ||
		!strings.Contains(err.Error(), "parameter name") || !strings.Contains(err.Error(), "deployment") {
		t.Errorf("render without the deployment label: %v", err)
	}
	if _, err := byName["crashloop"].Steps[1].Render(map[string]string{"namespace": "prod-a"}); err == nil ||
		!strings.Contains(err.Error(), "parameter pod: rendered empty") {
		t.Errorf("render without the pod label through index: %v", err)
	}
	// Defaults apply.
	if args, _ := byName["crashloop"].Steps[0].Render(map[string]string{"namespace": "n", "deployment": "d"}); args.Str("kind") != "Deployment" {
		t.Errorf("kind default = %q", args.Str("kind"))
	}
}

func TestPolicyRenderChecksValues(t *testing.T) {
	tree, err := ParsePolicies("p.yaml", []byte(`
policies:
  name: s
  steps:
    - action: scale
      params: {namespace: a, name: b, max: "{{.max}}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Policies[0].Steps[0].Render(map[string]string{"max": "lots"}); err == nil || !strings.Contains(err.Error(), "parameter max: must be an integer") {
		t.Errorf("render of a non-integer max: %v", err)
	}
}
