package kube_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/kube"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// deployment returns a Deployment of n replicas pinned to node.
func deployment(name, node string, n int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"kubernetes.io/hostname": node},
					Containers:   []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
				},
			},
		},
	}
}

func podsOf(t *testing.T, cs kubernetes.Interface, ns, app string, want int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	testenv.Eventually(t, 2*time.Minute, 200*time.Millisecond, fmt.Sprintf("%d running pods of %s", want, app), func(ctx context.Context) error {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				pods = append(pods, p)
			}
		}
		if len(pods) != want {
			return fmt.Errorf("%d running", len(pods))
		}
		return nil
	})
	return pods
}

// gather collects the collector's metrics the way a scrape does.
func gather(t *testing.T, c collectors.Collector) map[string][]*dto.Metric {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	if err := c.Update(t.Context(), ch); err != nil {
		t.Fatalf("Update: %v", err)
	}
	close(ch)
	out := map[string][]*dto.Metric{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		name := m.Desc().String()
		name = name[strings.Index(name, `"`)+1:]
		name = name[:strings.Index(name, `"`)]
		out[name] = append(out[name], &pb)
	}
	return out
}

func labelsOf(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func counter(ms []*dto.Metric, label, value string) float64 {
	for _, m := range ms {
		if labelsOf(m)[label] == value {
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// TestEnrichPodsOnThisNode runs the collector against a real API server:
// the pods of a Deployment on this node are mapped from their UIDs (and a
// container ID) to namespace, pod, container and the Deployment; the pods
// of another node are not watched.
func TestEnrichPodsOnThisNode(t *testing.T) {
	k := testenv.StartKubernetes(t)
	cs := k.Client()
	ctx := t.Context()
	self, other := k.Nodes[0], k.Nodes[1]

	const ns = "shop"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*appsv1.Deployment{deployment("web", self, 2), deployment("elsewhere", other, 2)} {
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	web := podsOf(t, cs, ns, "web", 2)
	elsewhere := podsOf(t, cs, ns, "elsewhere", 2)

	var sw workload.Switch
	provided := 0
	set := collectors.Settings{
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		NodeName: self,
		ProvideEnricher: func(e workload.Enricher) {
			provided++
			sw.Set(e)
		},
	}
	cfg := kube.NewConfig()
	cfg.SyncTimeout = 2 * time.Minute
	c, err := kube.NewWithRESTConfig(cfg, set, k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	if provided != 1 {
		t.Fatalf("ProvideEnricher called %d times at Start, want 1", provided)
	}

	// Every pod of "web" (on this node) is enriched through the agent's
	// Switch, owner resolved through the ReplicaSet to the Deployment.
	for _, p := range web {
		testenv.Eventually(t, time.Minute, 100*time.Millisecond, "enrich "+p.Name, func(context.Context) error {
			id := workload.Identity{PodUID: string(p.UID)}
			sw.Enrich(&id)
			want := workload.Identity{PodUID: string(p.UID), Namespace: ns, Pod: p.Name, OwnerKind: "Deployment", OwnerName: "web"}
			if id != want {
				return fmt.Errorf("got %+v, want %+v", id, want)
			}
			return nil
		})
		info, ok := c.Pod(string(p.UID))
		if !ok || info.Labels["app"] != "web" || info.Node != self {
			t.Errorf("Pod(%s) = %+v, %v", p.UID, info, ok)
		}
	}
	// Pods on the other node are not in the cache: their identities stay
	// as they were, and the miss is counted.
	for _, p := range elsewhere {
		id := workload.Identity{PodUID: string(p.UID)}
		sw.Enrich(&id)
		if id != (workload.Identity{PodUID: string(p.UID)}) {
			t.Errorf("pod %s on %s was enriched by the collector of %s: %+v", p.Name, other, self, id)
		}
	}

	// A container ID the kubelet reports in the pod status maps to the
	// container's name, whether the identity carries the pod UID or not.
	const cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	patch := fmt.Sprintf(`{"status":{"containerStatuses":[{"name":"app","image":"example.invalid/app:1","imageID":"","ready":true,"restartCount":0,"containerID":"containerd://%s","state":{"running":{}}}]}}`, cid)
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, web[0].Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, 100*time.Millisecond, "enrich by container ID", func(context.Context) error {
		id := workload.Identity{ContainerID: cid, Runtime: "containerd"}
		sw.Enrich(&id)
		want := workload.Identity{ContainerID: cid, Runtime: "containerd", PodUID: string(web[0].UID), Namespace: ns,
			Pod: web[0].Name, Container: "app", OwnerKind: "Deployment", OwnerName: "web"}
		if id != want {
			return fmt.Errorf("got %+v, want %+v", id, want)
		}
		return nil
	})

	// vigil_kube_pod_info lists exactly this node's pods, joinable on pod_uid.
	got := map[string]map[string]string{}
	for _, m := range gather(t, c)["vigil_kube_pod_info"] {
		l := labelsOf(m)
		got[l["pod_uid"]] = l
	}
	if len(got) != len(web) {
		t.Errorf("vigil_kube_pod_info has %d pods, want the %d on %s: %v", len(got), len(web), self, got)
	}
	for _, p := range web {
		want := map[string]string{"namespace": ns, "pod": p.Name, "pod_uid": string(p.UID), "owner_kind": "Deployment", "owner_name": "web", "node": self}
		if fmt.Sprint(got[string(p.UID)]) != fmt.Sprint(want) {
			t.Errorf("vigil_kube_pod_info for %s = %v, want %v", p.Name, got[string(p.UID)], want)
		}
	}
	ms := gather(t, c)
	if v := counter(ms["vigil_kube_enrich_total"], "result", "miss"); v < float64(len(elsewhere)) {
		t.Errorf("vigil_kube_enrich_total{result=miss} = %v, want >= %d", v, len(elsewhere))
	}
	if v := counter(ms["vigil_kube_watch_errors_total"], "resource", "pods"); v != 0 {
		t.Errorf("vigil_kube_watch_errors_total{resource=pods} = %v with an admin client", v)
	}

	// The watch follows changes: a bare pod and a StatefulSet-like owner
	// appear, a deleted pod disappears.
	bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bare"}, Spec: corev1.PodSpec{NodeName: self,
		Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c:1"}}}}
	bp, err := cs.CoreV1().Pods(ns).Create(ctx, bare, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, web[1].Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, 100*time.Millisecond, "watch follows create and delete", func(context.Context) error {
		id := workload.Identity{PodUID: string(bp.UID)}
		sw.Enrich(&id)
		if id.Pod != "bare" || id.OwnerKind != "" || id.OwnerName != "" {
			return fmt.Errorf("bare pod: %+v", id)
		}
		if _, ok := c.Pod(string(web[1].UID)); ok {
			return fmt.Errorf("deleted pod %s still cached", web[1].Name)
		}
		return nil
	})

	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	id := workload.Identity{PodUID: string(web[0].UID)}
	sw.Enrich(&id)
	if id.Pod != "" || provided != 2 {
		t.Fatalf("after Shutdown the enricher is still provided (calls %d): %+v", provided, id)
	}
}

// TestForbiddenIsCounted starts the collector as a ServiceAccount without
// any RBAC: Start fails within sync_timeout, says what to check, and the
// failed list calls are counted.
func TestForbiddenIsCounted(t *testing.T) {
	k := testenv.StartKubernetes(t)
	rc := k.ServiceAccountConfig(t, "default", "nobody")
	cfg := kube.NewConfig()
	cfg.SyncTimeout = 3 * time.Second
	c, err := kube.NewWithRESTConfig(cfg, collectors.Settings{NodeName: k.Nodes[0]}, rc)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(t.Context())
	if err == nil {
		_ = c.Shutdown(t.Context())
		t.Fatal("Start succeeded without RBAC")
	}
	if !strings.Contains(err.Error(), "RBAC") {
		t.Errorf("error does not point at RBAC: %v", err)
	}
	ch := make(chan prometheus.Metric, 16)
	_ = c.Update(t.Context(), ch)
	close(ch)
	var pods float64
	for m := range ch {
		var pb dto.Metric
		_ = m.Write(&pb)
		if strings.Contains(m.Desc().String(), "vigil_kube_watch_errors_total") && labelsOf(&pb)["resource"] == "pods" {
			pods = pb.GetCounter().GetValue()
		}
	}
	if pods < 1 {
		t.Errorf("vigil_kube_watch_errors_total{resource=pods} = %v, want >= 1", pods)
	}
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestNamespacesScope watches only the listed namespaces.
func TestNamespacesScope(t *testing.T) {
	k := testenv.StartKubernetes(t)
	cs := k.Client()
	ctx := t.Context()
	for _, ns := range []string{"a", "b"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("app", k.Nodes[0], 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pa, pb := podsOf(t, cs, "a", "app", 1)[0], podsOf(t, cs, "b", "app", 1)[0]
	cfg := kube.NewConfig()
	cfg.Namespaces = []string{"a"}
	c, err := kube.NewWithRESTConfig(cfg, collectors.Settings{NodeName: k.Nodes[0]}, k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	testenv.Eventually(t, time.Minute, 100*time.Millisecond, "pod in namespace a", func(context.Context) error {
		id := workload.Identity{PodUID: string(pa.UID)}
		c.Enrich(&id)
		if id.Namespace != "a" || id.OwnerKind != "Deployment" || id.OwnerName != "app" {
			return fmt.Errorf("%+v", id)
		}
		return nil
	})
	if _, ok := c.Pod(string(pb.UID)); ok {
		t.Errorf("pod in namespace b is watched although namespaces is [a]")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
