package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	kustomizeDir = "kubernetes"
	chartDir     = "helm/vigil"
)

// decodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeObjects(t testing.TB, src string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", src, err)
		}
		if len(m) == 0 {
			continue
		}
		// Round-trip through JSON so numbers have the same Go types
		// whichever renderer produced them.
		b, _ := json.Marshal(m)
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		out = append(out, &u)
	}
	return out
}

// kustomize renders a kustomization directory as `kubectl kustomize` does.
// Overlays in temporary folders may refer to the base by absolute path.
func kustomize(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = kusttypes.LoadRestrictionsNone
	rm, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	y, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return decodeObjects(t, "kustomize "+dir, y)
}

// overlay writes a kustomization that uses the base with components and
// renders it.
func overlay(t testing.TB, components ...string) []*unstructured.Unstructured {
	t.Helper()
	base, err := filepath.Abs(kustomizeDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// kustomize refuses absolute paths: refer to the base relatively.
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel + "\n"
	if len(components) > 0 {
		k += "components:\n"
		for _, c := range components {
			k += "  - " + filepath.Join(rel, "components", c) + "\n"
		}
	}
	writeFile(t, filepath.Join(dir, "kustomization.yaml"), k)
	return kustomize(t, dir)
}

// loadChart loads the chart; extra files are added as if they were in the
// chart's folder (for dashboards).
func loadChart(t testing.TB, extra ...*chart.File) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	c.Files = append(c.Files, extra...)
	return c
}

// helmTemplate renders the chart as `helm template NAME --namespace NS
// --values VALUES` does and returns the objects in a stable order.
func helmTemplate(t testing.TB, c *chart.Chart, name, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	vals, err := chartutil.ToRenderValues(c, values,
		chartutil.ReleaseOptions{Name: name, Namespace: namespace, Revision: 1, IsInstall: true, IsUpgrade: false},
		chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(c, vals)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		if strings.HasSuffix(n, ".yaml") && !strings.Contains(n, "/_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []*unstructured.Unstructured
	for _, n := range names {
		out = append(out, decodeObjects(t, n, []byte(files[n]))...)
	}
	return out, nil
}

func mustHelm(t testing.TB, c *chart.Chart, name, namespace string, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := helmTemplate(t, c, name, namespace, values)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return objs
}

func key(u *unstructured.Unstructured) string {
	return fmt.Sprintf("%s/%s %s/%s", u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName())
}

// helmOnly are the labels and annotations that only the Helm rendering
// carries, by design: Helm's bookkeeping labels, and the configuration
// checksum that rolls the agents on `helm upgrade` (with kustomize, run
// `kubectl rollout restart ds/vigil` after changing a ConfigMap).
var (
	helmOnlyLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
	helmOnlyAnnotations = []string{"checksum/config"}
)

// normalize makes two renderings comparable: it drops the Helm-only
// metadata and parses the YAML files in ConfigMaps, so comments and key
// order do not count but every value does.
func normalize(t testing.TB, objs []*unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, u := range objs {
		u = u.DeepCopy()
		labels := u.GetLabels()
		for _, l := range helmOnlyLabels {
			delete(labels, l)
		}
		u.SetLabels(labels)
		if u.GetKind() == "DaemonSet" {
			ann, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "annotations")
			for _, a := range helmOnlyAnnotations {
				delete(ann, a)
			}
			if len(ann) == 0 {
				unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "annotations")
			} else {
				_ = unstructured.SetNestedStringMap(u.Object, ann, "spec", "template", "metadata", "annotations")
			}
		}
		if u.GetKind() == "ConfigMap" {
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			parsed := map[string]any{}
			for k, v := range data {
				if strings.HasSuffix(k, ".yaml") {
					var doc any
					if err := yaml.Unmarshal([]byte(v), &doc); err != nil {
						t.Fatalf("%s data %s: %v", key(u), k, err)
					}
					parsed[k] = doc
				} else {
					parsed[k] = v
				}
			}
			u.Object["data"] = parsed
		}
		k := key(u)
		if _, dup := out[k]; dup {
			t.Fatalf("%s rendered twice", k)
		}
		out[k] = u.Object
	}
	return out
}
