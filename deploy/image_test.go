package deploy_test

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/vigil-agent/vigil/internal/image"
)

// daemonSetImage returns the image of the DaemonSet's only container.
func daemonSetImage(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() != "DaemonSet" {
			continue
		}
		ctrs, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		if err != nil || len(ctrs) != 1 {
			t.Fatalf("DaemonSet containers: %d, %v", len(ctrs), err)
		}
		img, _ := ctrs[0].(map[string]any)["image"].(string)
		return img
	}
	t.Fatal("no DaemonSet")
	return ""
}

// TestImageTagIsAppVersion: the chart and the kustomize base default to the
// image `make image` tags, ghcr.io/vigil-agent/vigil:<appVersion>; the
// kustomize base's images: newTag is the chart's appVersion.
func TestImageTagIsAppVersion(t *testing.T) {
	appVersion, err := image.ChartAppVersion("..")
	if err != nil {
		t.Fatal(err)
	}
	want := image.VigilRef(appVersion)

	b, err := os.ReadFile(filepath.Join(kustomizeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Images []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.Unmarshal(b, &kust); err != nil {
		t.Fatal(err)
	}
	if len(kust.Images) != 1 || kust.Images[0].Name != image.VigilRepository || kust.Images[0].NewName != "" ||
		kust.Images[0].NewTag != appVersion {
		t.Errorf("kustomization.yaml images: %+v, want one %s with newTag %s (Chart.yaml appVersion)",
			kust.Images, image.VigilRepository, appVersion)
	}

	if got := daemonSetImage(t, kustomize(t, kustomizeDir)); got != want {
		t.Errorf("kustomize renders image %s, make image tags %s", got, want)
	}
	if got := daemonSetImage(t, mustHelm(t, loadChart(t), "vigil", "vigil", helmDefaults(nil))); got != want {
		t.Errorf("helm renders image %s, make image tags %s", got, want)
	}
	// image.tag overrides appVersion; image.repository the registry.
	got := daemonSetImage(t, mustHelm(t, loadChart(t), "vigil", "vigil", helmDefaults(map[string]any{
		"image": map[string]any{"repository": "registry.example.com/team/vigil"},
	})))
	if got != "registry.example.com/team/vigil:"+appVersion {
		t.Errorf("helm with image.repository renders %s", got)
	}
}
