package deploy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// networkPolicy returns the rendered NetworkPolicy, or nil.
func networkPolicy(objs []*unstructured.Unstructured) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == "NetworkPolicy" {
			return u
		}
	}
	return nil
}

// TestNetworkPolicy: the agent's port admits only the scraper and
// Alertmanager (issue 18), in the kustomize base and the chart (which
// TestHelmAndKustomizeAgree keeps the same); the chart's values name the
// two peers, add more, or leave the policy out.
func TestNetworkPolicy(t *testing.T) {
	peer := func(ns, name string) map[string]any {
		return map[string]any{
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": ns}},
			"podSelector":       map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": name}},
		}
	}
	check := func(name string, np *unstructured.Unstructured, from []any) {
		t.Helper()
		if np == nil {
			t.Fatalf("%s: no NetworkPolicy", name)
		}
		spec := np.Object["spec"].(map[string]any)
		want := map[string]any{
			"podSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "vigil", "app.kubernetes.io/instance": "vigil"}},
			"policyTypes": []any{"Ingress"},
			"ingress": []any{map[string]any{
				"from":  from,
				"ports": []any{map[string]any{"port": "http-metrics", "protocol": "TCP"}},
			}},
		}
		if diff := cmp.Diff(want, spec); diff != "" {
			t.Errorf("%s: NetworkPolicy spec (-want +got):\n%s", name, diff)
		}
	}
	defaults := []any{peer("monitoring", "prometheus"), peer("monitoring", "alertmanager")}
	check("kustomize", networkPolicy(kustomize(t, kustomizeDir)), defaults)
	c := loadChart(t)
	check("helm", networkPolicy(mustHelm(t, c, "vigil", "vigil", nil)), defaults)

	custom := mustHelm(t, c, "vigil", "vigil", map[string]any{"networkPolicy": map[string]any{
		"scraper":      map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "obs"}}, "podSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "vmagent"}}},
		"alertmanager": map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "obs"}}, "podSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "alertmanager"}}},
		"extraFrom":    []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}},
	}})
	check("helm custom peers", networkPolicy(custom), []any{peer("obs", "vmagent"), peer("obs", "alertmanager"),
		map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}})

	if np := networkPolicy(mustHelm(t, c, "vigil", "vigil", map[string]any{"networkPolicy": map[string]any{"enabled": false}})); np != nil {
		t.Error("networkPolicy.enabled=false still renders a NetworkPolicy")
	}
}

// TestQueryAPIOffInTheDaemonSet: the shipped configuration turns the
// query API off (issue 18); the chart's queryAPI value turns it on.
func TestQueryAPIOffInTheDaemonSet(t *testing.T) {
	queryAPI := func(objs []*unstructured.Unstructured) any {
		for _, u := range objs {
			if u.GetKind() == "ConfigMap" && u.GetName() == "vigil-config" {
				data, _, _ := unstructured.NestedString(u.Object, "data", "vigil.yaml")
				var cfg map[string]any
				if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
					t.Fatal(err)
				}
				rules, _ := cfg["rules"].(map[string]any)
				q, _ := rules["query_api"].(map[string]any)
				return q["enabled"]
			}
		}
		t.Fatal("no vigil-config ConfigMap")
		return nil
	}
	c := loadChart(t)
	for name, objs := range map[string][]*unstructured.Unstructured{
		"kustomize": kustomize(t, kustomizeDir),
		"helm":      mustHelm(t, c, "vigil", "vigil", nil),
	} {
		if got := queryAPI(objs); got != false {
			t.Errorf("%s: rules.query_api.enabled = %v, want false", name, got)
		}
	}
	if got := queryAPI(mustHelm(t, c, "vigil", "vigil", map[string]any{"queryAPI": true})); got != true {
		t.Errorf("helm queryAPI=true: rules.query_api.enabled = %v", got)
	}
}
