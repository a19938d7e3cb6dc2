package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestKubernetes(t *testing.T) {
	k := testenv.StartKubernetes(t)
	if len(k.Nodes) != 2 {
		t.Fatalf("nodes = %v, want 2", k.Nodes)
	}

	t.Run("DeploymentPodsReadyAndEndpointSliceLists3", func(t *testing.T) {
		ctx := t.Context()
		c := k.Client()
		labels := map[string]string{"app": "web"}
		replicas := int32(3)
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name:  "web",
						Image: "example.invalid/web:1",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					}}},
				},
			},
		}
		if _, err := c.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{
				Selector: labels,
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		}
		if _, err := c.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		testenv.Eventually(t, 2*time.Minute, 250*time.Millisecond, "3 Running and Ready pods", func(ctx context.Context) error {
			pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			ready := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && podReady(&p) && p.Spec.NodeName != "" {
					ready++
				}
			}
			if ready != 3 {
				return fmt.Errorf("%d of %d pods Running and Ready", ready, len(pods.Items))
			}
			return nil
		})
		testenv.Eventually(t, 2*time.Minute, 250*time.Millisecond, "EndpointSlice with 3 ready endpoints", func(ctx context.Context) error {
			slices, err := c.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{
				LabelSelector: discoveryv1.LabelServiceName + "=web",
			})
			if err != nil {
				return err
			}
			ready := 0
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
						ready++
					}
				}
			}
			if ready != 3 {
				return fmt.Errorf("%d ready endpoints in %d slices", ready, len(slices.Items))
			}
			return nil
		})
	})

	t.Run("ServiceAccountRefusedOutsideItsRole", func(t *testing.T) {
		ctx := t.Context()
		c := k.Client()
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "narrow"}}
		if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "narrow"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"},
			}},
		}
		if _, err := c.RbacV1().Roles("narrow").Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "agent-reads-pods", Namespace: "narrow"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "agent", Namespace: "narrow"}},
		}
		if _, err := c.RbacV1().RoleBindings("narrow").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		sa, err := kubernetes.NewForConfig(k.ServiceAccountConfig(t, "narrow", "agent"))
		if err != nil {
			t.Fatal(err)
		}
		// Allowed by the Role (RBAC caches may lag a moment after the binding).
		testenv.Eventually(t, time.Minute, 250*time.Millisecond, "ServiceAccount may list pods", func(ctx context.Context) error {
			_, err := sa.CoreV1().Pods("narrow").List(ctx, metav1.ListOptions{})
			return err
		})
		// A verb outside the Role.
		err = sa.CoreV1().Pods("narrow").Delete(ctx, "anything", metav1.DeleteOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("delete pod as narrow/agent: err = %v, want Forbidden", err)
		}
		// A resource outside the Role.
		_, err = sa.AppsV1().Deployments("narrow").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("list deployments as narrow/agent: err = %v, want Forbidden", err)
		}
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
