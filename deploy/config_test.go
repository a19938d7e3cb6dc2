package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vigil-agent/vigil/agent"
	_ "github.com/vigil-agent/vigil/components"
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
	}
}
