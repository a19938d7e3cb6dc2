package kubeclient_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/vigil-agent/vigil/internal/kubeclient"
	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go's shared transport keeps idle keep-alive connections.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// sent is one request as it left the client.
type sent struct {
	method, path, contentType, accept, userAgent string
}

// recorder keeps the requests a client sends.
type recorder struct {
	mu   sync.Mutex
	reqs []sent
	next http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, sent{req.Method, req.URL.Path, req.Header.Get("Content-Type"), req.Header.Get("Accept"), req.Header.Get("User-Agent")})
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) find(t *testing.T, method, path string) sent {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.reqs {
		if s.method == method && s.path == path {
			return s
		}
	}
	t.Fatalf("no %s %s among %d requests", method, path, len(r.reqs))
	return sent{}
}

// Every call the agent makes, against a real API server, as the typed
// clientset would send it: protobuf for built-in kinds, JSON for the
// eviction, the configured user agent, and API errors the apierrors
// helpers recognise.
func TestClientAgainstAPIServer(t *testing.T) {
	k := testenv.StartKubernetes(t)
	admin := k.Client()
	ctx := t.Context()
	ns := "kc"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	rec := &recorder{}
	rc := k.RESTConfig()
	rc.UserAgent = "vigil-test"
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec }
	c, err := kubeclient.New(rc)
	if err != nil {
		t.Fatal(err)
	}

	node, err := c.Nodes().Get(ctx, k.Nodes[0], metav1.GetOptions{})
	if err != nil || node.Name != k.Nodes[0] {
		t.Fatalf("get node: %v %v", node.Name, err)
	}
	if _, err := c.Nodes().Patch(ctx, k.Nodes[1], types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"vigil.dev/t":"1"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if s := rec.find(t, "GET", "/api/v1/nodes/"+k.Nodes[0]); s.accept != "application/vnd.kubernetes.protobuf,application/json" || s.userAgent != "vigil-test" {
		t.Errorf("get node sent %+v", s)
	}

	// Pods: create, get, list, watch, update, status, delete.
	w, err := c.Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=p"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// On a node that does not exist, so nothing else updates the pod.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app": "p"}},
		Spec: corev1.PodSpec{NodeName: "nowhere", ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "vigil.dev/t"}},
			Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c:1"}}}}
	if pod, err = c.Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if s := rec.find(t, "POST", "/api/v1/namespaces/"+ns+"/pods"); s.contentType != "application/vnd.kubernetes.protobuf" {
		t.Errorf("create pod sent %+v", s)
	}
	select {
	case ev := <-w.ResultChan():
		if p, ok := ev.Object.(*corev1.Pod); ev.Type != watch.Added || !ok || p.Name != "p" {
			t.Fatalf("watch: %s %T", ev.Type, ev.Object)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch: no event")
	}
	list, err := c.Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=nowhere", LabelSelector: "app=p"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %d %v", len(list.Items), err)
	}
	pod.Labels["vigil.dev/x"] = "y"
	if pod, err = c.Pods(ns).Update(ctx, pod, metav1.UpdateOptions{FieldManager: "vigil"}); err != nil {
		t.Fatal(err)
	}
	stale := pod.DeepCopy()
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: "vigil.dev/t", Status: corev1.ConditionFalse})
	if _, err := c.Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale.Labels["vigil.dev/x"] = "z"
	if _, err := c.Pods(ns).Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v, want a conflict", err)
	}
	got, err := c.Pods(ns).Get(ctx, "p", metav1.GetOptions{})
	if err != nil || got.Labels["vigil.dev/x"] != "y" || len(got.Status.Conditions) == 0 {
		t.Fatalf("get: %v %v", got.Labels, err)
	}

	// Eviction (JSON, as client-go sends it), then a missing pod.
	if err := c.Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}}); err != nil {
		t.Fatal(err)
	}
	if s := rec.find(t, "POST", "/api/v1/namespaces/"+ns+"/pods/p/eviction"); !strings.HasPrefix(s.contentType, "application/json") {
		t.Errorf("eviction sent %+v", s)
	}
	if err := c.Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"}}); !apierrors.IsNotFound(err) {
		t.Fatalf("evict a missing pod: %v", err)
	}
	if err := c.Pods(ns).Delete(ctx, "gone", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("delete a missing pod: %v", err)
	}

	// Workloads and their scale.
	labels := map[string]string{"app": "d"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c:1"}}}}}}
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The deployment controller writes the deployment's status meanwhile, so
	// an update can meet a conflict; the healing actuator retries the same way.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := c.Deployments(ns).GetScale(ctx, "d", metav1.GetOptions{})
		if err != nil || sc.Spec.Replicas != 1 {
			t.Fatalf("get scale: %+v %v", sc, err)
		}
		sc.Spec.Replicas = 3
		_, err = c.Deployments(ns).UpdateScale(ctx, "d", sc, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deployments(ns).Patch(ctx, "d", types.StrategicMergePatchType, []byte(`{"metadata":{"annotations":{"vigil.dev/t":"1"}}}`), metav1.PatchOptions{FieldManager: "vigil"}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Deployments(ns).Get(ctx, "d", metav1.GetOptions{}); err != nil || *got.Spec.Replicas != 3 || got.Annotations["vigil.dev/t"] != "1" {
		t.Fatalf("deployment after scale and patch: %v", err)
	}
	if _, err := c.StatefulSets(ns).GetScale(ctx, "none", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("scale of a missing StatefulSet: %v", err)
	}
	for _, get := range []func() error{
		func() error { _, err := c.ReplicaSets(ns).Get(ctx, "none", metav1.GetOptions{}); return err },
		func() error { _, err := c.DaemonSets(ns).Get(ctx, "none", metav1.GetOptions{}); return err },
	} {
		if err := get(); !apierrors.IsNotFound(err) {
			t.Fatalf("get a missing workload: %v", err)
		}
	}

	// Leases: the second create loses.
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: ns}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("a")}}
	if _, err := c.Leases(ns).Create(ctx, l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leases(ns).Create(ctx, l, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second lease: %v", err)
	}

	// Events and Services.
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "vigil-", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Namespace: ns, Name: "d"}, Reason: "Test", Type: corev1.EventTypeNormal}
	if _, err := c.Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svcs, err := c.Services("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=kubernetes"})
	if err != nil || len(svcs.Items) != 1 {
		t.Fatalf("services: %d %v", len(svcs.Items), err)
	}
}

// A QPS without a burst is refused, as kubernetes.NewForConfig refuses it.
func TestNewNeedsBurstWithQPS(t *testing.T) {
	_, err := kubeclient.New(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5})
	if err == nil || !strings.Contains(err.Error(), "burst is required") {
		t.Fatalf("err = %v", err)
	}
}
