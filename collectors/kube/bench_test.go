package kube_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/kube"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// BenchmarkEnrich compares enriching an identity from the informer cache
// with what a per-event API call would cost (a GET of the pod, then of its
// ReplicaSet), on 30 pods of one Deployment on a real API server.
func BenchmarkEnrich(b *testing.B) {
	k := testenv.StartKubernetes(b)
	cs := k.Client()
	ctx := b.Context()
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, deployment("web", k.Nodes[0], 30), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var pods []corev1.Pod
	testenv.Eventually(b, 3*time.Minute, 250*time.Millisecond, "30 pods", func(ctx context.Context) error {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		pods = l.Items
		if len(pods) != 30 {
			return fmt.Errorf("%d pods", len(pods))
		}
		return nil
	})
	c, err := kube.NewWithRESTConfig(kube.NewConfig(), collectors.Settings{NodeName: k.Nodes[0]}, k.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	testenv.Eventually(b, time.Minute, 100*time.Millisecond, "all pods enriched", func(context.Context) error {
		for _, p := range pods {
			id := workload.Identity{PodUID: string(p.UID)}
			c.Enrich(&id)
			if id.OwnerKind != "Deployment" {
				return fmt.Errorf("%s: %+v", p.Name, id)
			}
		}
		return nil
	})

	b.Run("cache", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			id := workload.Identity{PodUID: string(pods[i%len(pods)].UID)}
			c.Enrich(&id)
			i++
		}
	})
	// The per-event alternative, without client-side rate limiting so that
	// it measures the API server's round trips, not the limiter.
	rc := k.RESTConfig()
	rc.QPS = -1
	direct, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("api-get", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p := pods[i%len(pods)]
			got, err := direct.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ref := metav1.GetControllerOf(got)
			if _, err := direct.AppsV1().ReplicaSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
