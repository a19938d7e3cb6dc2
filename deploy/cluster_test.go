package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/vigil-agent/vigil/healing"
	"github.com/vigil-agent/vigil/internal/kubeclient"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// applier does what `kubectl apply --server-side [--dry-run=server]` does,
// with client-go: the harness builds no kubectl.
type applier struct {
	t      *testing.T
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, rc *rest.Config) *applier {
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{t: t, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// apply server-side applies each object; dryRun sends dryRun=All, so the
// API server validates, defaults and admits the objects without storing
// them.
func (a *applier) apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) error {
	a.mapper.Reset()
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", key(u), err)
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = a.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		data, err := json.Marshal(u.Object)
		if err != nil {
			return err
		}
		opts := metav1.PatchOptions{FieldManager: "vigil-deploy-test", Force: ptr.To(true)}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts); err != nil {
			return fmt.Errorf("apply %s (dry-run %v): %w", key(u), dryRun, err)
		}
	}
	return nil
}

// applyBoth applies the Namespace objects for real first (namespaced
// objects cannot even be dry-run into a namespace that does not exist),
// then every object with server-side dry-run, then every object for real.
func (a *applier) applyBoth(ctx context.Context, objs []*unstructured.Unstructured) {
	a.t.Helper()
	var nss []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			nss = append(nss, u)
		}
	}
	if err := a.apply(ctx, nss, true); err != nil {
		a.t.Fatal(err)
	}
	if err := a.apply(ctx, nss, false); err != nil {
		a.t.Fatal(err)
	}
	if err := a.apply(ctx, objs, true); err != nil {
		a.t.Fatal(err)
	}
	if err := a.apply(ctx, objs, false); err != nil {
		a.t.Fatal(err)
	}
}

// installServiceMonitorCRD installs a stand-in for prometheus-operator's
// ServiceMonitor CRD: same group, version, kind and scope, with an open
// schema (the real CRD is not vendored here). It lets the optional
// ServiceMonitor objects be applied and admitted.
func installServiceMonitorCRD(t *testing.T, k *testenv.Kube) {
	crd := &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "servicemonitors", Singular: "servicemonitor", Kind: "ServiceMonitor", ListKind: "ServiceMonitorList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true)}}}},
		},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, k.RESTConfig())
	if err := a.apply(t.Context(), []*unstructured.Unstructured{{Object: obj}}, false); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, 200*time.Millisecond, "ServiceMonitor CRD served", func(ctx context.Context) error {
		a.mapper.Reset()
		_, err := a.mapper.RESTMapping(schema.GroupKind{Group: "monitoring.coreos.com", Kind: "ServiceMonitor"}, "v1")
		return err
	})
}

// canIList is `kubectl auth can-i --list -n ns` for the client's user, as
// "group/resource verb" tuples.
func canIList(t *testing.T, cs kubernetes.Interface, ns string) []string {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(t.Context(),
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status.Incomplete {
		t.Fatalf("rules review incomplete: %s", r.Status.EvaluationError)
	}
	seen := map[string]bool{}
	var out []string
	for _, rule := range r.Status.ResourceRules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				if len(rule.ResourceNames) > 0 {
					t.Errorf("unexpected rule limited to names %v: %v", rule.ResourceNames, rule)
				}
				if g == "" {
					g = "core"
				}
				for _, v := range rule.Verbs {
					tup := g + "/" + res + " " + v
					if !seen[tup] {
						seen[tup] = true
						out = append(out, tup)
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// wantInNamespace turns expectedRules into what a review in namespace ns
// shows: cluster-wide rules everywhere, the Lease rules only in the
// release namespace.
func wantInNamespace(release, ns string) []string {
	var out []string
	for _, r := range expectedRulesIn(release) {
		if base, ok := strings.CutSuffix(r, " ("+release+")"); ok {
			if ns == release {
				out = append(out, base)
			}
			continue
		}
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// checkRights compares the ServiceAccount's rights with expectedRules.
// Every ServiceAccount also holds what the cluster's default roles give all
// authenticated users and service accounts (self reviews,
// clustertrustbundles read, …); those are measured on a ServiceAccount
// without bindings in the same namespace and subtracted.
func checkRights(t *testing.T, k *testenv.Kube, release, sa string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(k.ServiceAccountConfig(t, release, sa))
	if err != nil {
		t.Fatal(err)
	}
	baseline, err := kubernetes.NewForConfig(k.ServiceAccountConfig(t, release, "baseline-no-bindings"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{release, "default"} {
		all := canIList(t, cs, ns)
		for _, r := range all {
			if strings.Contains(r, "*") || strings.Contains(r, "secrets") {
				t.Errorf("forbidden right %q", r)
			}
		}
		everyone := map[string]bool{}
		for _, r := range canIList(t, baseline, ns) {
			everyone[r] = true
		}
		var got []string
		for _, r := range all {
			if !everyone[r] {
				got = append(got, r)
			}
		}
		t.Logf("can-i --list -n %s as %s/%s, less every ServiceAccount's defaults (%d):\n  %s", ns, release, sa, len(everyone), strings.Join(got, "\n  "))
		if diff := cmp.Diff(wantInNamespace(release, ns), got); diff != "" {
			t.Errorf("ServiceAccount %s/%s in namespace %s has other rights than the actuators need (-want +got):\n%s", release, sa, ns, diff)
		}
	}
}

// daemonSetReady waits until the DaemonSet runs a ready agent on every
// (kwok) node: the pod spec was admitted (Pod Security "privileged" label,
// capabilities, hostPath) and scheduled despite any taint.
func daemonSetReady(t *testing.T, cs kubernetes.Interface, ns, name string, nodes int) {
	testenv.Eventually(t, 2*time.Minute, 250*time.Millisecond, "DaemonSet "+ns+"/"+name+" ready on every node", func(ctx context.Context) error {
		ds, err := cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if int(ds.Status.NumberReady) != nodes || int(ds.Status.DesiredNumberScheduled) != nodes {
			return fmt.Errorf("desired %d, ready %d", ds.Status.DesiredNumberScheduled, ds.Status.NumberReady)
		}
		return nil
	})
}

// TestClusterApplyAndRights applies the kustomize base (with the
// ServiceMonitor component) and the Helm output to a real API server:
// server-side dry-run, then for real; the DaemonSets run on every node;
// and each ServiceAccount's rights, as `kubectl auth can-i --list` reports
// them, are exactly the expected ones.
func TestClusterApplyAndRights(t *testing.T) {
	k := testenv.StartKubernetes(t)
	cs := k.Client()
	installServiceMonitorCRD(t, k)
	a := newApplier(t, k.RESTConfig())

	kust := overlay(t, "servicemonitor")
	a.applyBoth(t.Context(), kust)
	daemonSetReady(t, cs, "vigil", "vigil", len(k.Nodes))
	checkRights(t, k, "vigil", "vigil")

	// The Helm release in its own namespace, ServiceMonitor and a dashboard
	// included.
	helm := mustHelm(t, loadChart(t), "vigil-helm", "vigil-helm", map[string]any{
		"createNamespace": true,
		"serviceMonitor":  map[string]any{"enabled": true},
	})
	a.applyBoth(t.Context(), helm)
	daemonSetReady(t, cs, "vigil-helm", "vigil-helm", len(k.Nodes))
	checkRights(t, k, "vigil-helm", "vigil-helm")

	// Server-side dry-run stores nothing: a dry-run of a new object leaves
	// no trace.
	extra := mustHelm(t, loadChart(t), "vigil-dry", "vigil", nil)
	if err := a.apply(t.Context(), extra, true); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().DaemonSets("vigil").Get(t.Context(), "vigil-dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry-run created the DaemonSet: %v", err)
	}
}

// TestAgentWithServiceAccountToken runs the vigil binary outside the
// cluster with the kustomize base's ServiceAccount token (a kubeconfig with
// only that token): its kube collector lists and watches this node's pods
// and resolves their Deployment. Then each Kubernetes actuator of the
// healing engine acts with a client holding the same token (healing.Lookup
// and Act, as the engine calls them), and the two API uses the engine
// makes outside actuators (the audit Event and the per-target Lease, whose
// helpers are unexported) are made directly with client-go: none is
// Forbidden.
func TestAgentWithServiceAccountToken(t *testing.T) {
	k := testenv.StartKubernetes(t)
	admin := k.Client()
	ctx := t.Context()
	a := newApplier(t, k.RESTConfig())
	a.applyBoth(ctx, kustomize(t, kustomizeDir))
	saRC := k.ServiceAccountConfig(t, "vigil", "vigil")
	self := k.Nodes[0]

	// A workload for the agent to see and the actuators to act on.
	const ns = "shop"
	mustCreate(t, func() error {
		_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		return err
	})
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			NodeSelector:    map[string]string{"kubernetes.io/hostname": self},
			ReadinessGates:  []corev1.PodReadinessGate{{ConditionType: "vigil.dev/healthy"}},
			Containers:      []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
			SecurityContext: &corev1.PodSecurityContext{},
		},
	}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	mustCreate(t, func() error {
		_, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
		return err
	})
	dbLabels := map[string]string{"app": "db"}
	mustCreate(t, func() error {
		st := tmpl.DeepCopy()
		st.Labels = dbLabels
		st.Spec.ReadinessGates = nil
		_, err := admin.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: dbLabels}, Template: *st}}, metav1.CreateOptions{})
		return err
	})
	dsLabels := map[string]string{"app": "agent"}
	mustCreate(t, func() error {
		st := tmpl.DeepCopy()
		st.Labels = dsLabels
		st.Spec.ReadinessGates = nil
		st.Spec.NodeSelector = nil
		_, err := admin.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: dsLabels}, Template: *st}}, metav1.CreateOptions{})
		return err
	})

	// The agent binary, built as `make build` does, with a kubeconfig
	// holding nothing but the ServiceAccount token.
	bin := buildAgent(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "sa.kubeconfig")
	writeTokenKubeconfig(t, kubeconfig, saRC)
	port := testenv.FreePort(t)
	cfg := filepath.Join(dir, "vigil.yaml")
	writeFile(t, cfg, fmt.Sprintf(`global:
  node_name: %s
collectors:
  cgroup: {enabled: false}
  host: {enabled: false}
  logs: {enabled: false}
  kube:
    kubeconfig: %s
`, self, kubeconfig))
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	agent := testenv.StartProcess(t, testenv.Command{
		Name:  "vigil",
		Path:  bin,
		Args:  []string{"run", "--config=" + cfg, "--web.listen-address=127.0.0.1:" + strconv.Itoa(port)},
		Ready: testenv.HTTPReady(base + "/-/ready"),
	})
	var webPods []corev1.Pod
	testenv.Eventually(t, 2*time.Minute, 500*time.Millisecond, "agent reports the Deployment's pods", func(ctx context.Context) error {
		l, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		webPods = l.Items
		if len(webPods) != 3 {
			return fmt.Errorf("%d web pods", len(webPods))
		}
		metrics, err := scrape(ctx, base+"/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(metrics, `vigil_collector_success{collector="kube"} 1`) {
			return fmt.Errorf("kube collector not successful; agent log:\n%s", agent.LogTail(20))
		}
		for _, p := range webPods {
			want := fmt.Sprintf(`vigil_kube_pod_info{namespace="shop",node=%q,owner_kind="Deployment",owner_name="web",pod=%q,pod_uid=%q} 1`, self, p.Name, p.UID)
			if !strings.Contains(metrics, want) {
				return fmt.Errorf("missing %s", want)
			}
		}
		// The DaemonSet "agent" has a pod on each node; only this node's
		// is reported.
		l, err = admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			return err
		}
		for _, p := range l.Items {
			reported := strings.Contains(metrics, fmt.Sprintf("pod_uid=%q", p.UID))
			if onSelf := p.Spec.NodeName == self; reported != onSelf {
				return fmt.Errorf("pod %s on %s: reported=%v", p.Name, p.Spec.NodeName, reported)
			}
		}
		if len(l.Items) != len(k.Nodes) {
			return fmt.Errorf("%d agent pods", len(l.Items))
		}
		return nil
	})
	if out, _ := scrape(ctx, base+"/metrics"); strings.Contains(out, "Forbidden") {
		t.Errorf("Forbidden in the agent's metrics")
	}
	if log := agent.LogTail(200); strings.Contains(log, "forbidden") || strings.Contains(log, "Forbidden") {
		t.Errorf("agent log mentions Forbidden:\n%s", log)
	}

	// Each actuator API call, as the ServiceAccount.
	sa, err := kubernetes.NewForConfig(saRC)
	if err != nil {
		t.Fatal(err)
	}
	pods := sa.CoreV1().Pods(ns)
	apps := sa.AppsV1()
	p0, p1, p2 := webPods[0].Name, webPods[1].Name, webPods[2].Name
	type call struct {
		what string
		do   func(ctx context.Context) error
	}
	calls := []call{
		{"kube collector: get, list (all namespaces), watch pods", func(ctx context.Context) error {
			if _, err := pods.Get(ctx, p0, metav1.GetOptions{}); err != nil {
				return err
			}
			if _, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + self}); err != nil {
				return err
			}
			w, err := pods.Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"kube collector: list, watch replicasets", func(ctx context.Context) error {
			if _, err := apps.ReplicaSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
				return err
			}
			w, err := apps.ReplicaSets("").Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"healing audit: create event", func(ctx context.Context) error {
			_, err := sa.CoreV1().Events(ns).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: "web."},
				InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Namespace: ns, Name: "web", APIVersion: "apps/v1"},
				Reason:         "VigilRemediation", Message: "test", Type: corev1.EventTypeNormal,
				Source: corev1.EventSource{Component: "vigil"}, FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1,
			}, metav1.CreateOptions{})
			return err
		}},
		{"healing lease: create, get, update", func(ctx context.Context) error {
			leases := sa.CoordinationV1().Leases("vigil")
			l, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "deployment-shop-web"},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(self), LeaseDurationSeconds: ptr.To[int32](60)}}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if l, err = leases.Get(ctx, l.Name, metav1.GetOptions{}); err != nil {
				return err
			}
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			return err
		}},
	}
	// The healing engine's Kubernetes actuators, as the ServiceAccount.
	saKube, err := kubeclient.New(saRC)
	if err != nil {
		t.Fatal(err)
	}
	env := &healing.Env{Kube: saKube, NodeName: self, Identity: self, Logger: slog.New(slog.DiscardHandler),
		Retry: healing.RetryPolicy{Steps: 3}, ReadinessCondition: healing.DefaultReadinessCondition}
	act := func(action string, args map[string]string) call {
		return call{"healing " + action + " " + fmt.Sprint(args), func(ctx context.Context) error {
			a, ok := healing.Lookup(action)
			if !ok {
				return fmt.Errorf("no actuator %q", action)
			}
			full := healing.Args{}
			for _, p := range a.Params() {
				if v, ok := args[p.Name]; ok {
					full[p.Name] = []string{v}
				} else if p.Default != "" {
					full[p.Name] = []string{p.Default}
				}
			}
			out, err := a.Act(ctx, env, healing.Request{Args: full})
			t.Logf("%s: %s", action, out.Message)
			return err
		}}
	}
	calls = append(calls,
		act("reroute_readiness", map[string]string{"namespace": ns, "pod": p1}),
		act("quarantine", map[string]string{"namespace": ns, "pod": p0}),
		act("evict_pod", map[string]string{"namespace": ns, "pod": p2}),
		act("delete_pod", map[string]string{"namespace": ns, "pod": p1}),
		act("rollout_restart", map[string]string{"namespace": ns, "kind": "Deployment", "name": "web"}),
		act("rollout_restart", map[string]string{"namespace": ns, "kind": "StatefulSet", "name": "db"}),
		act("rollout_restart", map[string]string{"namespace": ns, "kind": "DaemonSet", "name": "agent"}),
		act("scale", map[string]string{"namespace": ns, "kind": "Deployment", "name": "web", "max": "5"}),
		act("scale", map[string]string{"namespace": ns, "kind": "StatefulSet", "name": "db", "max": "3"}),
		act("cordon", map[string]string{"node": self}),
		act("drain", map[string]string{"node": self, "timeout": "2m", "grace_period": "0"}),
	)
	for _, c := range calls {
		if err := c.do(ctx); err != nil {
			if apierrors.IsForbidden(err) {
				t.Errorf("%s: Forbidden for the ServiceAccount: %v", c.what, err)
			} else {
				t.Errorf("%s: %v", c.what, err)
			}
		}
	}

	// And what it must not do.
	denied := []call{
		{"list secrets", func(ctx context.Context) error {
			_, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"create pod", func(ctx context.Context) error {
			_, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: tmpl.Spec}, metav1.CreateOptions{})
			return err
		}},
		{"delete node", func(ctx context.Context) error { return sa.CoreV1().Nodes().Delete(ctx, self, metav1.DeleteOptions{}) }},
		{"patch deployment scale", func(ctx context.Context) error {
			_, err := apps.Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":9}}`), metav1.PatchOptions{}, "scale")
			return err
		}},
		{"delete deployment", func(ctx context.Context) error {
			return apps.Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{})
		}},
		{"create lease outside vigil", func(ctx context.Context) error {
			_, err := sa.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}},
		{"read configmap", func(ctx context.Context) error {
			_, err := sa.CoreV1().ConfigMaps("vigil").Get(ctx, "vigil-config", metav1.GetOptions{})
			return err
		}},
	}
	for _, c := range denied {
		if err := c.do(ctx); !apierrors.IsForbidden(err) {
			t.Errorf("%s: want Forbidden, got %v", c.what, err)
		}
	}
}

func mustCreate(t *testing.T, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

func scrape(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return b.String(), sc.Err()
}

// buildAgent builds cmd/vigil into the test's temp folder.
func buildAgent(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "vigil")
	cmd := exec.Command("go", "build", "-o", out, "../cmd/vigil")
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vigil: %v\n%s", err, b)
	}
	return out
}

// writeTokenKubeconfig writes a kubeconfig with the server, its CA and the
// bearer token of rc, and nothing else.
func writeTokenKubeconfig(t *testing.T, path string, rc *rest.Config) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["vigil"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "vigil"}
	cfg.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}
