//go:build linux

package exporters

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/cgroup"
	"github.com/vigil-agent/vigil/collectors/kube"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// scraped adapts a Vigil collector to a Prometheus registry the way the
// agent's /metrics does: every scrape calls Update.
type scraped struct{ c collectors.Collector }

func (scraped) Describe(chan<- *prometheus.Desc) {}

func (s scraped) Collect(ch chan<- prometheus.Metric) { _ = s.c.Update(context.Background(), ch) }

// TestDeploymentOwnerOnMetricsAndOTLP runs the kube collector against a
// real API server and the cgroup collector over a cgroup tree whose pod
// slice carries the UID of a pod that a ReplicaSet of the Deployment "web"
// owns. The pod's series on /metrics carry owner_kind="Deployment" and
// owner_name="web", and what an OpenTelemetry Collector receives over OTLP
// carries k8s.deployment.name=web and service.name=web.
func TestDeploymentOwnerOnMetricsAndOTLP(t *testing.T) {
	k := testenv.StartKubernetes(t)
	otel := testenv.StartOTelCollector(t)
	cs := k.Client()
	ctx := t.Context()
	self := k.Nodes[0]

	const ns = "shop"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"kubernetes.io/hostname": self},
					Containers:   []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	testenv.Eventually(t, 2*time.Minute, 200*time.Millisecond, "the Deployment's pod", func(ctx context.Context) error {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(l.Items) != 1 || l.Items[0].Spec.NodeName != self {
			return fmt.Errorf("%d pods", len(l.Items))
		}
		if ref := metav1.GetControllerOf(&l.Items[0]); ref == nil || ref.Kind != "ReplicaSet" {
			return fmt.Errorf("pod controller %v, want a ReplicaSet", ref)
		}
		pod = l.Items[0]
		return nil
	})

	// The kubelet would make this pod's cgroup; here the cgroup
	// collector's v2 fixture tree gets a pod slice named after its UID.
	sysfs := t.TempDir()
	if err := os.CopyFS(sysfs, os.DirFS("../collectors/cgroup/testdata/v2-fixture")); err != nil {
		t.Fatal(err)
	}
	burstable := filepath.Join(sysfs, "fs/cgroup/kubepods.slice/kubepods-burstable.slice")
	podSlice := "kubepods-burstable-pod" + strings.ReplaceAll(string(pod.UID), "-", "_") + ".slice"
	if err := os.Rename(filepath.Join(burstable, "kubepods-burstable-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f60718.slice"), filepath.Join(burstable, podSlice)); err != nil {
		t.Fatal(err)
	}
	cgroupPath := "/kubepods.slice/kubepods-burstable.slice/" + podSlice

	var sw workload.Switch
	logger := slog.New(slog.DiscardHandler)
	kcfg := kube.NewConfig()
	kcfg.SyncTimeout = 2 * time.Minute
	kc, err := kube.NewWithRESTConfig(kcfg, collectors.Settings{Logger: logger, NodeName: self, ProvideEnricher: sw.Set}, k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.Shutdown(context.Background()) })
	testenv.Eventually(t, time.Minute, 100*time.Millisecond, "the pod's owner in the kube cache", func(context.Context) error {
		if info, ok := kc.Pod(string(pod.UID)); !ok || info.OwnerKind != "Deployment" {
			return fmt.Errorf("pod %+v", info)
		}
		return nil
	})
	cg, err := cgroup.New(cgroup.NewConfig(), collectors.Settings{Logger: logger, NodeName: self,
		Paths: collectors.Paths{ProcFS: "/proc", SysFS: sysfs, RootFS: "/"}, Enricher: &sw})
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cg.Shutdown(context.Background()) })

	reg := prometheus.NewRegistry()
	reg.MustRegister(scraped{cg}, scraped{kc})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	// /metrics: the pod's series carry the Deployment.
	want := fmt.Sprintf(`vigil_cgroup_memory_usage_bytes{cgroup=%q,container="",container_id="",namespace="shop",owner_kind="Deployment",owner_name="web",pod=%q,pod_uid=%q,unit=""}`,
		cgroupPath, pod.Name, pod.UID)
	testenv.Eventually(t, time.Minute, 200*time.Millisecond, "the Deployment on /metrics", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if !strings.Contains(string(body), want) {
			var lines []string
			for _, l := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(l, "vigil_cgroup_memory_usage_bytes{") {
					lines = append(lines, l)
				}
			}
			return fmt.Errorf("missing %s; have:\n%s", want, strings.Join(lines, "\n"))
		}
		return nil
	})

	// OTLP: the collector receives the series with the Deployment as a
	// resource attribute.
	cfg := NewConfig()
	cfg.Interval = time.Hour
	cfg.lookupEnv = env(nil)
	cfg.Targets = map[string]*ExporterConfig{
		"otlp/collector": {Endpoint: otel.GRPCEndpoint, TLS: TLSConfig{Insecure: true}, Signals: []string{SignalMetrics}, Retry: fastRetry()},
	}
	x, err := New(cfg, Settings{Logger: testLogger(t), NodeName: self, Registerer: prometheus.NewRegistry(), Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Shutdown(context.Background()) })
	x.GatherNow()
	wantRes := map[string]any{"k8s.deployment.name": "web", AttrServiceName: "web", AttrK8sNamespaceName: ns,
		AttrK8sPodName: pod.Name, AttrK8sPodUID: string(pod.UID), AttrK8sNodeName: self}
	testenv.Eventually(t, time.Minute, 200*time.Millisecond, "the Deployment in what the collector received", func(context.Context) error {
		ms, err := otel.Metrics()
		if err != nil {
			return err
		}
		var seen []map[string]any
		for _, m := range ms {
			if m.Name != "vigil_cgroup_memory_usage_bytes" || m.Resource[AttrK8sPodUID] != string(pod.UID) {
				continue
			}
			seen = append(seen, m.Resource)
			ok := true
			for k, v := range wantRes {
				ok = ok && m.Resource[k] == v
			}
			if ok {
				return nil
			}
		}
		return fmt.Errorf("no vigil_cgroup_memory_usage_bytes resource with %v; seen %v", wantRes, seen)
	})
}
