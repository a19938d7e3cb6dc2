package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vigil-agent/vigil/agent"
	_ "github.com/vigil-agent/vigil/components"
	"github.com/vigil-agent/vigil/healing"
	"github.com/vigil-agent/vigil/rules"
)

// TestShippedConfigLoads loads the vigil.yaml that the kustomize base and
// the Helm chart put in the ConfigMap with the agent's own strict loader
// (every section, the kube collector's included), as the agent in the
// DaemonSet does at start.
func TestShippedConfigLoads(t *testing.T) {
	t.Setenv("NODE_NAME", "node-a")
	renders := map[string][]*unstructured.Unstructured{
		"kustomize":            kustomize(t, kustomizeDir),
		"helm":                 mustHelm(t, loadChart(t), "vigil", "vigil", nil),
		"helm live namespaced": mustHelm(t, loadChart(t), "vigil", "vigil", map[string]any{"dryRun": false, "rbac": map[string]any{"scope": "namespaces", "namespaces": []any{"shop"}}}),
		"helm config":          mustHelm(t, loadChart(t), "vigil", "vigil", tunedValues),
	}
	for name, objs := range renders {
		// The rules and policies ConfigMaps are mounted at
		// /etc/vigil/{rules,policies}; put their files in a temporary
		// folder instead, so the loader reads the shipped ones.
		dir := t.TempDir()
		var data string
		for _, u := range objs {
			if u.GetKind() != "ConfigMap" {
				continue
			}
			files, _, _ := unstructured.NestedStringMap(u.Object, "data")
			switch {
			case strings.HasSuffix(u.GetName(), "-config"):
				data = files["vigil.yaml"]
			case strings.HasSuffix(u.GetName(), "-rules"), strings.HasSuffix(u.GetName(), "-policies"):
				sub := filepath.Join(dir, strings.TrimPrefix(u.GetName(), "vigil-"))
				if err := os.MkdirAll(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				for f, content := range files {
					writeFile(t, filepath.Join(sub, f), content)
				}
			}
		}
		if data == "" {
			t.Fatalf("%s: no vigil.yaml", name)
		}
		data = strings.ReplaceAll(data, "/etc/vigil/", dir+"/")
		data = strings.ReplaceAll(data, "/var/lib/vigil/", dir+"/state/")
		cfg, err := agent.Load(name+" vigil.yaml", []byte(data))
		if err != nil {
			t.Errorf("%s: the shipped configuration does not load:\n%v", name, err)
			continue
		}
		if cfg.Global.NodeName != "node-a" || !cfg.Collectors["kube"].Enabled {
			t.Errorf("%s: node %q, kube collector enabled %v", name, cfg.Global.NodeName, cfg.Collectors["kube"].Enabled)
		}
		if name == "helm config" {
			checkTuned(t, cfg, dir)
		}
	}

	// A key the agent does not know, given through config, is refused
	// at start with its name, as in any vigil.yaml.
	objs := mustHelm(t, loadChart(t), "vigil", "vigil", map[string]any{"config": map[string]any{"rules": map[string]any{"evaluation_intervall": "15s"}}})
	for _, u := range objs {
		if u.GetKind() == "ConfigMap" && strings.HasSuffix(u.GetName(), "-config") {
			data, _, _ := unstructured.NestedString(u.Object, "data", "vigil.yaml")
			_, err := agent.Load("vigil.yaml", []byte(data))
			if err == nil || !strings.Contains(err.Error(), `rules.evaluation_intervall: unknown field (did you mean "evaluation_interval"?)`) {
				t.Errorf("config.rules.evaluation_intervall: error %v, want the key named and evaluation_interval suggested", err)
			}
		}
	}
}

// tunedValues sets agent settings that have no value of their own through
// the chart's config value.
var tunedValues = map[string]any{"config": map[string]any{
	"rules": map[string]any{
		"evaluation_interval": "15s",
		"event_alerts":        map[string]any{"resolve_after": "10m"},
	},
	"healing": map[string]any{"repeat_interval": "30m"},
}}

// checkTuned checks that tunedValues reached the agent and that merging
// them kept the chart's own settings of the same sections.
func checkTuned(t *testing.T, cfg *agent.Config, dir string) {
	t.Helper()
	rc := cfg.Sections["rules"].(*rules.Config)
	hc := cfg.Sections["healing"].(*healing.Config)
	if rc.EvaluationInterval != 15*time.Second || rc.EventAlerts.ResolveAfter != 10*time.Minute || hc.RepeatInterval != 30*time.Minute {
		t.Errorf("config value: evaluation_interval %v, event_alerts.resolve_after %v, repeat_interval %v; want 15s, 10m, 30m",
			rc.EvaluationInterval, rc.EventAlerts.ResolveAfter, hc.RepeatInterval)
	}
	if rc.StorageDir != dir+"/state/tsdb" || len(rc.RuleFiles) != 2 || !hc.DryRun || hc.PolicyFile != dir+"/policies/policies.yaml" {
		t.Errorf("config value dropped the chart's settings: storage_dir %q, rule_files %v, dry_run %v, policy_file %q",
			rc.StorageDir, rc.RuleFiles, hc.DryRun, hc.PolicyFile)
	}
}
