package agent

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/healing"
	"github.com/vigil-agent/vigil/rules"
)

// The healing section runs inside the agent: alerts on the agent's stream
// are acted on, /api/v1/actions lists the decisions, and a reload swaps
// the policies (here into dry-run) without a restart.
func TestHealingSectionInTheAgent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vigil.yaml")
	conf := func(dryRun string) string {
		return `
healing:
  dry_run: ` + dryRun + `
  kubernetes: {mode: "off"}
  maintenance_file: ` + filepath.Join(dir, "maintenance") + `
  policies:
    name: touch
    steps:
      - action: exec
        params: {command: ["/bin/true"], target: "{{.n}}"}
`
	}
	writeFile(t, path, conf("false"))
	a, url := startAgent(t, path)

	actions := func(n int) []healing.Record {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, _, body := get(t, url+"/api/v1/actions")
			var ar healing.ActionsResponse
			if code == 200 && json.Unmarshal([]byte(body), &ar) == nil && len(ar.Actions) >= n {
				return ar.Actions
			}
			if time.Now().After(deadline) {
				t.Fatalf("wanted %d actions: %d %s", n, code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	a.Alerts().Publish(rules.Alert{Labels: map[string]string{"alertname": "A", "n": "1"}, State: rules.StateFiring})
	if r := actions(1)[0]; r.Result != healing.ResultSuccess || r.Policy != "touch" {
		t.Fatalf("first: %+v", r)
	}
	writeFile(t, path, conf("true"))
	if code, body := reload(t, a); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	a.Alerts().Publish(rules.Alert{Labels: map[string]string{"alertname": "A", "n": "2"}, State: rules.StateFiring})
	if r := actions(2)[1]; r.Result != healing.ResultDryRun {
		t.Fatalf("after reload: %+v", r)
	}
	_, _, metrics := get(t, url+"/metrics")
	wantLine(t, metrics, `vigil_remediations_total{action="exec",policy="touch",result="success"} 1`)
	// A policy that does not load keeps the running one.
	writeFile(t, path, strings.Replace(conf("true"), "action: exec", "action: nope", 1))
	if code, body := reload(t, a); code == 200 || !strings.Contains(body, `unknown action "nope"`) {
		t.Fatalf("bad reload: %d %s", code, body)
	}
}
