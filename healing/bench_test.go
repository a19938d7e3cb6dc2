package healing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-agent/vigil/internal/kubeclient"
	"github.com/vigil-agent/vigil/internal/testenv"
	"github.com/vigil-agent/vigil/rules"
)

// benchEngine is an engine whose every alert runs one action. The
// rollout guard is left out for the Kubernetes actions, which act on the
// same object again and again; every other guard runs.
func benchEngine(b *testing.B, policy string, opts ...func(*Options)) *harness {
	quiet := func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) }
	return startEngine(b, "dry_run: false\nhistory: 100000\npolicies:\n"+policy, append([]func(*Options){quiet}, opts...)...)
}

// runAlertBench publishes b.N alerts (setup before each, untimed) and
// waits for each decision record. ns/op is the time from the alert
// entering the stream to the actuator's call returning and the record
// being written; "act-ms" is the actuator's own call alone.
func runAlertBench(b *testing.B, h *harness, labels func(i int) map[string]string, setup func(i int)) {
	sub := h.e.History().Subscribe(16)
	defer sub.Close()
	var act time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if setup != nil {
			b.StopTimer()
			setup(i)
			b.StartTimer()
		}
		h.stream.Publish(rules.Alert{Labels: labels(i), State: rules.StateFiring})
		r := <-sub.C()
		if r.Result != ResultSuccess {
			b.Fatalf("record: %+v", r)
		}
		act += time.Duration(r.Duration * float64(time.Second))
	}
	b.StopTimer()
	b.ReportMetric(float64(act.Microseconds())/1000/float64(b.N), "act-ms")
}

func seq(extra map[string]string) func(int) map[string]string {
	return func(i int) map[string]string {
		l := map[string]string{"alertname": "Bench", "i": fmt.Sprint(i)}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
}

func BenchmarkAlertToAction(b *testing.B) {
	b.Run("exec", func(b *testing.B) {
		h := benchEngine(b, `  name: p
  steps: [{action: exec, params: {command: ["/bin/true"], target: "{{.i}}"}}]`)
		runAlertBench(b, h, seq(nil), nil)
	})
	b.Run("webhook", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		defer srv.Close()
		h := benchEngine(b, `  name: p
  steps: [{action: webhook, params: {url: "`+srv.URL+`"}}]`)
		runAlertBench(b, h, seq(nil), nil)
	})
	b.Run("haproxy_weight", func(b *testing.B) {
		hp := testenv.StartHAProxy(b, "127.0.0.1:1")
		h := benchEngine(b, `  name: p
  steps: [{action: haproxy_weight, params: {socket: "`+hp.AdminSocket+`", backend: be, server: s0, weight: "{{.w}}"}}]`)
		runAlertBench(b, h, func(i int) map[string]string {
			return map[string]string{"alertname": "Bench", "i": fmt.Sprint(i), "w": fmt.Sprint(i % 200)}
		}, nil)
	})
	b.Run("kubernetes", func(b *testing.B) {
		k := testenv.StartKubernetes(b)
		c := &cluster{k: k, admin: k.Client()}
		ctx := context.Background()
		for _, ns := range []string{"vigil", "bench"} {
			c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		}
		dep := func(name string) {
			if err := deployBench(ctx, c, name); err != nil {
				b.Fatal(err)
			}
		}
		dep("web")
		node := k.Nodes[0]
		kc, err := kubeclient.New(k.RESTConfig())
		if err != nil {
			b.Fatal(err)
		}
		noRollout := func(o *Options) { o.Kube = kc; o.NodeName = node }
		engine := func(b *testing.B, policy string) *harness {
			h := benchEngine(b, policy, noRollout)
			var g []Guard
			for _, x := range Guards {
				if x.Name != GuardRollout {
					g = append(g, x)
				}
			}
			h.e.SetGuards(g)
			return h
		}
		b.Run("rollout_restart", func(b *testing.B) {
			h := engine(b, `  name: p
  steps: [{action: rollout_restart, params: {namespace: bench, name: web}}]`)
			runAlertBench(b, h, seq(nil), nil)
		})
		b.Run("scale", func(b *testing.B) {
			h := engine(b, `  name: p
  steps: [{action: scale, params: {namespace: bench, name: web, step: "{{.step}}", max: "3"}}]`)
			runAlertBench(b, h, func(i int) map[string]string {
				return map[string]string{"alertname": "Bench", "i": fmt.Sprint(i), "step": []string{"1", "-1"}[i%2]}
			}, nil)
		})
		b.Run("cordon", func(b *testing.B) {
			h := engine(b, `  name: p
  steps: [{action: cordon, params: {node: "`+k.Nodes[1]+`"}}]`)
			runAlertBench(b, h, seq(nil), nil)
		})
		b.Run("delete_pod", func(b *testing.B) {
			h := engine(b, `  name: p
  steps: [{action: delete_pod, params: {namespace: bench, pod: "bare-{{.i}}", grace_period: "0"}}]`)
			runAlertBench(b, h, seq(nil), func(i int) {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bare-%d", i), Namespace: "bench"},
					Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "example.invalid/x"}}}}
				if _, err := c.admin.CoreV1().Pods("bench").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run("reroute_readiness", func(b *testing.B) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gated", Namespace: "bench"},
				Spec: corev1.PodSpec{NodeName: node, ReadinessGates: []corev1.PodReadinessGate{{ConditionType: DefaultReadinessCondition}},
					Containers: []corev1.Container{{Name: "c", Image: "example.invalid/x"}}}}
			if _, err := c.admin.CoreV1().Pods("bench").Create(ctx, p, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "exists") {
				b.Fatal(err)
			}
			h := engine(b, `  name: p
  steps: [{action: reroute_readiness, params: {namespace: bench, pod: gated}}]`)
			runAlertBench(b, h, seq(nil), nil)
		})
	})
}

func deployBench(ctx context.Context, c *cluster, name string) error {
	r := int32(1)
	labels := map[string]string{"app": name}
	_, err := c.admin.AppsV1().Deployments("bench").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &r, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/x"}}}}},
	}, metav1.CreateOptions{})
	return err
}
