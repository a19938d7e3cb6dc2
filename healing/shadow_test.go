package healing

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A shadow policy beside a live one on the same alerts, the agent live:
// the shadow policy decides and audits (result shadow, "would …") and
// never acts; the live policy acts as if the shadow one were not there
// (matching goes on past a shadow route without continue, and its records
// use up none of the live policy's cooldown or rate limit); the shadow
// policy's own guards count its would-be actions, so its second decision
// on the same target is the cooldown veto a live policy would get.
func TestShadowPolicyBesideLive(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  routes:
    - name: candidate
      shadow: true
      cooldown: 1h
      matchers: ['alertname="Broken"']
      steps:
        - action: exec
          params:
            command: ["/bin/sh", "-c", "echo \"shadow-$1\" >> \"$2\"", "sh", "{{.target}}", "$DIR/acted"]
            target: "{{.target}}"
      escalate:
        action: exec
        params:
          command: ["/bin/sh", "-c", "echo escalated >> \"$1\"", "sh", "$DIR/acted"]
    - name: live
      cooldown: 1h
      rate_limit: {max: 2, per: 1h}
      matchers: ['alertname="Broken"']
      steps:
        - action: exec
          params:
            command: ["/bin/sh", "-c", "echo \"$1\" >> \"$2\"", "sh", "{{.target}}", "$DIR/acted"]
            target: "{{.target}}"
`)
	h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "a"})
	h.settle()
	h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "b"})
	h.settle()
	h.fire(map[string]string{"alertname": "Broken", "target": "t2"})
	recs := h.settle()

	by := map[string][]string{}
	for _, r := range recs {
		x := string(r.Result)
		if r.Result == ResultVetoed {
			x += "(" + r.Guard + ")"
		}
		by[r.Policy] = append(by[r.Policy], x)
	}
	// The shadow policy's second decision on t1 falls in its own cooldown.
	if got := strings.Join(by["candidate"], " "); got != "shadow vetoed(cooldown) shadow" {
		t.Errorf("candidate: %q%s", got, dump(recs))
	}
	// The live policy: t1 once (its own cooldown), then t2; its rate limit
	// of 2 was not used up by the shadow records.
	if got := strings.Join(by["live"], " "); got != "success vetoed(cooldown) success" {
		t.Errorf("live: %q%s", got, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "t1,t2" {
		t.Errorf("acted: %s (the shadow policy must not act, nor escalate)", got)
	}
	for _, r := range recs {
		if r.Shadow != (r.Policy == "candidate") {
			t.Errorf("record %d of policy %s (%s) has shadow=%v", r.ID, r.Policy, r.Result, r.Shadow)
		}
		if r.Result != ResultShadow {
			continue
		}
		if !r.Shadow || r.DryRun || r.Guard != GuardShadow || !strings.Contains(r.Reason, "would exec Command") ||
			!strings.Contains(r.Reason, "policy candidate is a shadow policy") || r.Target.Name == "" {
			t.Errorf("shadow record: %+v", r)
		}
	}
	if got := testutil.ToFloat64(h.e.m.remediations.WithLabelValues("candidate", "exec", "shadow")); got != 2 {
		t.Errorf("vigil_remediations_total{policy=candidate,result=shadow} = %v, want 2", got)
	}
}

func TestShadowInherited(t *testing.T) {
	tree, err := ParsePolicies("p.yaml", []byte(`
policies:
  routes:
    - matchers: ['team="new"']
      shadow: true
      routes:
        - name: child
          steps: [{action: webhook, params: {url: "http://127.0.0.1:1/"}}]
        - name: live-child
          shadow: false
          steps: [{action: webhook, params: {url: "http://127.0.0.1:1/"}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range tree.Policies {
		got[p.Name] = p.Shadow
	}
	if !got["child"] || got["live-child"] {
		t.Errorf("shadow by policy: %v", got)
	}
}
