package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/vigil-agent/vigil/internal/testenv"
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

// TestCapabilitiesOnRealNode runs the chart's DaemonSet on a real node
// (kubelet, containerd, runc; internal/testenv) with the documented
// capabilities, then with each of them removed: with the documented set
// every eBPF program the collector attempts is loaded; without one the pod
// still starts, stays Ready without a restart, reports every program not
// loaded and logs which capability is missing, and the host collector
// still succeeds.
func TestCapabilitiesOnRealNode(t *testing.T) {
	k := testenv.StartKubernetesWith(t, testenv.KubeOptions{RealNode: true})
	tar, _ := testenv.VigilImage(t)
	k.Node.ImportImage(t, tar)
	var documented []string
	for _, c := range capabilityTable(t) {
		if c.added {
			documented = append(documented, c.name)
		}
	}
	// The chart's objects (Helm defaults; the node has the image, so it is
	// never pulled): the Namespace first, then everything but the
	// DaemonSet, which each case installs with its own capabilities.
	objs := mustHelm(t, loadChart(t), "vigil", capsNS, helmDefaults(map[string]any{
		"image": map[string]any{"pullPolicy": "Never"},
	}))
	var ds *unstructured.Unstructured
	var ns, rest []*unstructured.Unstructured
	for _, u := range objs {
		switch u.GetKind() {
		case "DaemonSet":
			ds = u
		case "Namespace":
			ns = append(ns, u)
		default:
			rest = append(rest, u)
		}
	}
	if ds == nil || len(ns) != 1 {
		t.Fatalf("chart: DaemonSet %v, %d Namespaces", ds != nil, len(ns))
	}
	kubectlApply(t, k, ns)
	testenv.Eventually(t, time.Minute, 250*time.Millisecond, "namespace "+capsNS, func(ctx context.Context) error {
		_, err := k.Client().CoreV1().Namespaces().Get(ctx, capsNS, metav1.GetOptions{})
		return err
	})
	kubectlApply(t, k, rest)
	checkCapabilityDegradation(t, k, ds, "", documented)
	for _, c := range documented {
		checkCapabilityDegradation(t, k, ds, c, documented)
	}
}

// capsNS is the namespace TestCapabilitiesOnRealNode installs into.
const capsNS = "vigil"

// kubectlApply applies objects with `kubectl apply -f` and returns the
// manifest's path.
func kubectlApply(t *testing.T, k *testenv.Kube, objs []*unstructured.Unstructured) string {
	t.Helper()
	var docs []string
	for _, u := range objs {
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(y))
	}
	manifest := filepath.Join(t.TempDir(), "objects.yaml")
	writeFile(t, manifest, strings.Join(docs, "---\n"))
	if out, err := k.Kubectl(t, "apply", "-f", manifest); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return manifest
}

// checkCapabilityDegradation installs the DaemonSet ds with capability
// remove taken out of the documented set ("" for none), checks the agent
// as TestCapabilitiesOnRealNode says, and deletes the DaemonSet and its pod
// again.
func checkCapabilityDegradation(t *testing.T, k *testenv.Kube, ds *unstructured.Unstructured, remove string, documented []string) {
	name := "documented"
	if remove != "" {
		name = "without " + remove
	}
	t.Run(name, func(t *testing.T) {
		add := slices.DeleteFunc(slices.Clone(documented), func(c string) bool { return c == remove })
		u := ds.DeepCopy()
		ctrs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		caps := make([]any, len(add))
		for i, c := range add {
			caps[i] = c
		}
		if err := unstructured.SetNestedSlice(ctrs[0].(map[string]any), caps, "securityContext", "capabilities", "add"); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedSlice(u.Object, ctrs, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		manifest := kubectlApply(t, k, []*unstructured.Unstructured{u})
		defer func() {
			if out, err := k.Kubectl(t, "delete", "-f", manifest, "--wait", "--timeout=2m"); err != nil {
				t.Errorf("%v: %s", err, out)
			}
			testenv.Eventually(t, 2*time.Minute, 500*time.Millisecond, "the agent pod gone", func(ctx context.Context) error {
				pods, err := k.Client().CoreV1().Pods(capsNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vigil"})
				if err != nil {
					return err
				}
				if len(pods.Items) > 0 {
					return fmt.Errorf("%d pods left", len(pods.Items))
				}
				return nil
			})
		}()

		var pod *corev1.Pod
		testenv.Eventually(t, 3*time.Minute, 500*time.Millisecond, "the agent pod Ready", func(ctx context.Context) error {
			pods, err := k.Client().CoreV1().Pods(capsNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vigil"})
			if err != nil {
				return err
			}
			var seen []string
			for i, p := range pods.Items {
				seen = append(seen, p.Name+" "+string(p.Status.Phase))
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
						pod = &pods.Items[i]
						return nil
					}
				}
			}
			return fmt.Errorf("no pod Ready: %v", seen)
		})
		var metrics string
		testenv.Eventually(t, time.Minute, time.Second, "the agent's eBPF metrics", func(context.Context) error {
			out, err := k.Node.Output("curl", "-sf", "http://"+net.JoinHostPort(pod.Status.PodIP, "19100")+"/metrics")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "vigil_ebpf_program_loaded{") {
				return errors.New("no vigil_ebpf_program_loaded yet")
			}
			metrics = out
			return nil
		})
		logs, err := k.Client().CoreV1().Pods(capsNS).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "vigil"}).DoRaw(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.Client().CoreV1().Pods(capsNS).Get(t.Context(), pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.RestartCount != 0 {
				t.Errorf("container %s restarted %d times", s.Name, s.RestartCount)
			}
		}
		loaded := 0
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "vigil_ebpf_program_loaded{") && strings.HasSuffix(line, " 1") {
				loaded++
			}
		}
		// Every collector succeeds, with or without the eBPF programs.
		for _, line := range strings.Split(grepLines(metrics, "vigil_collector_success{"), "\n") {
			if !strings.HasSuffix(line, " 1") {
				t.Errorf("collector failing: %s", line)
			}
		}
		t.Logf("%s: %d eBPF programs loaded; %s\nlog:\n%s", name, loaded,
			grepLines(metrics, "vigil_ebpf_feature_available{"), grepLines(string(logs), "eBPF"))
		if remove == "" {
			if loaded == 0 || strings.Contains(string(logs), `"msg":"eBPF program not loaded"`) ||
				strings.Contains(string(logs), "runs without programs") {
				t.Errorf("with the documented capabilities %d programs loaded", loaded)
			}
			// Nothing else the agent does is refused for want of a
			// capability (SYS_PTRACE, DAC_READ_SEARCH are not needed),
			// but the TLS uprobes on a kernel without uprobe_multi
			// links (before 6.6), which the kernel's uprobe PMU gives
			// only with SYS_ADMIN (docs/kube.md): said once, with the
			// capability. The agent attaches the host's libssl at start
			// and the node's kubelet and containerd are Go programs
			// linking crypto/tls, so the TLS discovery meets one soon
			// after the start: the log is read again until it says so.
			// With uprobe_multi links (this kernel) BPF and PERFMON
			// attach them: the host's libssl is attached by the time
			// the metrics are served.
			multi := strings.Contains(metrics, `vigil_ebpf_feature_available{feature="uprobe_multi"} 1`)
			const refusal = `"msg":"TLS uprobes not attached: TLS is not seen"`
			for deadline := time.Now().Add(time.Minute); !multi && !strings.Contains(string(logs), refusal) && time.Now().Before(deadline); {
				time.Sleep(2 * time.Second)
				if logs, err = k.Client().CoreV1().Pods(capsNS).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "vigil"}).DoRaw(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if multi && (!strings.Contains(metrics, `vigil_ebpf_tls_uncovered_processes{reason="no_privilege"} 0`) ||
				strings.Contains(metrics, `vigil_ebpf_tls_attached{library="openssl"} 0`)) {
				t.Errorf("with uprobe_multi links and the documented capabilities the host's libssl is not attached:\n%s",
					grepLines(metrics, "vigil_ebpf_tls_"))
			}
			tlsRefused := 0
			for _, line := range strings.Split(string(logs), "\n") {
				if strings.Contains(line, refusal) {
					tlsRefused++
					if !strings.Contains(line, "(CAP_SYS_ADMIN missing)") {
						t.Errorf("the TLS refusal does not name the capability: %s", line)
					}
					continue
				}
				if (strings.Contains(line, "permission denied") || strings.Contains(line, "not permitted")) &&
					!strings.Contains(line, `"level":"INFO"`) {
					t.Errorf("refused with the documented capabilities: %s", line)
				}
			}
			t.Logf("TLS: %d refusal lines; %s", tlsRefused, grepLines(metrics, "vigil_ebpf_tls_attached{"))
			switch {
			case multi && tlsRefused != 0:
				t.Errorf("the TLS uprobes refused %d times with uprobe_multi links, which need no SYS_ADMIN", tlsRefused)
			case !multi && tlsRefused != 1:
				t.Errorf("the TLS refusal logged %d times within a minute of the start, want once (the node runs Go TLS programs: its kubelet, containerd)", tlsRefused)
			}
			return
		}
		if loaded != 0 {
			t.Errorf("without %s %d programs loaded:\n%s", remove, loaded, grepLines(metrics, "vigil_ebpf_program_loaded"))
		}
		for _, want := range []string{
			`"msg":"eBPF programs cannot be loaded: CAP_` + remove + ` missing"`,
			`"msg":"eBPF collector runs without programs"`,
		} {
			if !strings.Contains(string(logs), want) {
				t.Errorf("without %s the log lacks %s", remove, want)
			}
		}
	})
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
