package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// kubeDoc holds the capability table the DaemonSet must match.
const kubeDoc = "../docs/kube.md"

// documentedCapability is one row of docs/kube.md's capability table.
type documentedCapability struct {
	name    string // as in the manifests: BPF, SYS_RESOURCE
	added   bool   // the "added" column starts with "yes"
	without string // the "without it" column
}

// capabilityTable parses the table under "### Capabilities" in
// docs/kube.md: "| `NAME` | yes|no… | what for | without it |".
func capabilityTable(t *testing.T) []documentedCapability {
	t.Helper()
	data, err := os.ReadFile(kubeDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n### Capabilities\n")
	if !ok {
		t.Fatalf("%s has no \"### Capabilities\" section", kubeDoc)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	var rows []documentedCapability
	header := false
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			if header && len(rows) > 0 {
				break // end of the table
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case !header:
			if want := []string{"capability", "added", "what for", "without it"}; !cmp.Equal(cells, want) {
				t.Fatalf("%s: capability table header %q, want %q", kubeDoc, cells, want)
			}
			header = true
			continue
		case strings.HasPrefix(cells[0], "---"):
			continue
		}
		if len(cells) != 4 {
			t.Fatalf("%s: capability row %q has %d cells, want 4", kubeDoc, line, len(cells))
		}
		name := strings.Trim(cells[0], "`")
		if name == "" || strings.ToUpper(name) != name || strings.HasPrefix(name, "CAP_") {
			t.Fatalf("%s: capability %q: want a name as in the manifests (BPF, SYS_PTRACE)", kubeDoc, cells[0])
		}
		added := strings.HasPrefix(cells[1], "yes")
		if !added && !strings.HasPrefix(cells[1], "no") {
			t.Fatalf("%s: capability %s: added column %q starts with neither yes nor no", kubeDoc, name, cells[1])
		}
		if cells[3] == "" {
			t.Errorf("%s: capability %s: no degradation documented", kubeDoc, name)
		}
		rows = append(rows, documentedCapability{name: name, added: added, without: cells[3]})
	}
	if len(rows) == 0 {
		t.Fatalf("%s: empty capability table", kubeDoc)
	}
	return rows
}

// containerCapabilities returns the DaemonSet container's capabilities
// (drop, add), and whether the container has a capabilities field.
func containerCapabilities(t *testing.T, objs []*unstructured.Unstructured) (drop, add []string, ok bool) {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() != "DaemonSet" {
			continue
		}
		ctrs, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		if err != nil || len(ctrs) != 1 {
			t.Fatalf("DaemonSet %s: containers %v, %v", u.GetName(), ctrs, err)
		}
		caps, found, err := unstructured.NestedMap(ctrs[0].(map[string]any), "securityContext", "capabilities")
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			return nil, nil, false
		}
		drop, _, _ = unstructured.NestedStringSlice(caps, "drop")
		add, _, _ = unstructured.NestedStringSlice(caps, "add")
		return drop, add, true
	}
	t.Fatal("no DaemonSet")
	return nil, nil, false
}

// TestCapabilitiesAreDocumented checks that the capabilities the DaemonSet
// gets (kustomize base and Helm defaults) are exactly those the table in
// docs/kube.md marks added, after dropping all; that Helm's
// extraCapabilities adds SYS_RESOURCE as the table says for old kernels,
// and the table's kustomize patch does the same; and that the privileged
// fallback has no capability list.
func TestCapabilitiesAreDocumented(t *testing.T) {
	table := capabilityTable(t)
	var documented []string
	byName := map[string]documentedCapability{}
	for _, c := range table {
		if _, dup := byName[c.name]; dup {
			t.Errorf("%s: capability %s listed twice", kubeDoc, c.name)
		}
		byName[c.name] = c
		if c.added {
			documented = append(documented, c.name)
		}
	}
	for _, r := range []struct {
		what string
		objs []*unstructured.Unstructured
	}{
		{"kustomize " + kustomizeDir, kustomize(t, kustomizeDir)},
		{"helm template (defaults)", mustHelm(t, loadChart(t), "vigil", "vigil", helmDefaults(nil))},
	} {
		drop, add, ok := containerCapabilities(t, r.objs)
		if !ok {
			t.Errorf("%s: the container has no capabilities", r.what)
			continue
		}
		if !cmp.Equal(drop, []string{"ALL"}) {
			t.Errorf("%s: capabilities drop %q, want [ALL]", r.what, drop)
		}
		if !cmp.Equal(slices.Sorted(slices.Values(add)), slices.Sorted(slices.Values(documented))) {
			t.Errorf("%s: capabilities add %q; %s documents %q", r.what, add, kubeDoc, documented)
		}
	}

	// Kernels before 5.11: SYS_RESOURCE, documented and not added by default.
	sr, ok := byName["SYS_RESOURCE"]
	if !ok || sr.added || !strings.Contains(sr.without, "RLIMIT_MEMLOCK") {
		t.Errorf("%s: SYS_RESOURCE row %+v: want listed, not added, its RLIMIT_MEMLOCK degradation described", kubeDoc, sr)
	}
	extra := helmDefaults(map[string]any{"extraCapabilities": []any{"SYS_RESOURCE"}})
	helmOld := mustHelm(t, loadChart(t), "vigil", "vigil", extra)
	if _, add, _ := containerCapabilities(t, helmOld); !cmp.Equal(add, append(slices.Clone(documented), "SYS_RESOURCE")) {
		t.Errorf("helm extraCapabilities=[SYS_RESOURCE]: add %q, want %q and SYS_RESOURCE", add, documented)
	}
	assertSame(t, kustomizeWithDocPatch(t), helmOld)

	if _, _, ok := containerCapabilities(t, overlay(t, "privileged")); ok {
		t.Error("kustomize privileged component: the container still has a capability list")
	}
	if _, _, ok := containerCapabilities(t, mustHelm(t, loadChart(t), "vigil", "vigil",
		helmDefaults(map[string]any{"privileged": true}))); ok {
		t.Error("helm privileged=true: the container still has a capability list")
	}
}

// kustomizeWithDocPatch renders an overlay of the base with the patches
// block docs/kube.md gives for kernels 5.8 to 5.10.
func kustomizeWithDocPatch(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(kubeDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "Kernels 5.8 to 5.10 with kustomize")
	if !ok {
		t.Fatalf("%s: no kustomize patch for kernels 5.8 to 5.10", kubeDoc)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 || !strings.HasPrefix(block, "patches:") {
		t.Fatalf("%s: the kustomize patch for kernels 5.8 to 5.10 is not a ```yaml block starting with patches:", kubeDoc)
	}
	base, err := filepath.Abs(kustomizeDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "kustomization.yaml"),
		"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - "+rel+"\n"+block)
	return kustomize(t, dir)
}
