package healing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-agent/vigil/internal/kubeclient"
)

// MaintenanceAnnotation pauses every action on an object, on the pods of a
// workload that carries it, or on everything on a node that carries it,
// while its value is anything but "false".
const MaintenanceAnnotation = "vigil.dev/maintenance"

// ErrNoKubernetes is returned by Kubernetes actions on a host without a
// Kubernetes client.
var ErrNoKubernetes = errors.New("kubernetes is not configured on this agent (healing.kubernetes.mode)")

// RetryPolicy bounds retries of transient API errors: after Steps
// attempts, the action fails closed with a clear error.
type RetryPolicy struct {
	Steps int
	Base  time.Duration
}

// NewKubeClient builds a client from cfg: nil and no error when mode is
// auto and no configuration is available (a plain host).
func NewKubeClient(cfg KubeConfig) (*kubeclient.Client, *rest.Config, error) {
	if cfg.Mode == "off" {
		return nil, nil, nil
	}
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) && cfg.Mode == "auto" {
			return nil, nil, nil
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: %w", err)
	}
	rc = rest.CopyConfig(rc)
	rc.Timeout = cfg.RequestTimeout
	rc.UserAgent = "vigil-healing"
	cs, err := kubeclient.New(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: %w", err)
	}
	return cs, rc, nil
}

// transient reports whether err is worth retrying: the API server could
// not be reached, timed out, throttled or failed internally.
func transient(err error) bool {
	var p permanentError
	if err == nil || errors.As(err, &p) {
		return false
	}
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "EOF") || strings.Contains(s, "no route to host")
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

func permanent(err error) error { return permanentError{err} }

// conflictBackoff paces the read-modify-write actuators (scale, quarantine,
// reroute) when the object changed between their read and their write. A
// controller rolling a workload out writes its status many times a second
// for a few seconds, so the retries spread over about 2.5 s rather than
// client-go's DefaultRetry, which gives up after 50 ms. Every retry reads
// the object again: a write is never made from a stale read.
var conflictBackoff = wait.Backoff{Steps: 8, Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.2}

// kubeDo runs f, retrying transient errors with exponential backoff up to
// env.Retry.Steps attempts in all; then it fails closed with an error that
// says the API server was unreachable. It never retries without bound.
func (env *Env) kubeDo(ctx context.Context, what string, f func(ctx context.Context) error) error {
	if env.Kube == nil {
		return ErrNoKubernetes
	}
	steps := env.Retry.Steps
	if steps < 1 {
		steps = 1
	}
	base := env.Retry.Base
	if base <= 0 {
		base = 200 * time.Millisecond
	}
	var last error
	attempts := 0
	err := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: base, Factor: 2, Jitter: 0.1, Steps: steps},
		func(ctx context.Context) (bool, error) {
			attempts++
			last = f(ctx)
			if last == nil {
				return true, nil
			}
			if transient(last) {
				return false, nil
			}
			return false, last
		})
	switch {
	case err == nil:
		return nil
	case last != nil && transient(last):
		return fmt.Errorf("%s: kubernetes API unreachable after %d attempts, failing closed: %w", what, attempts, last)
	case last != nil:
		return fmt.Errorf("%s: %w", what, last)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func maintenanceOn(obj metav1.Object) bool {
	v, ok := obj.GetAnnotations()[MaintenanceAnnotation]
	return ok && v != "false"
}

// gatherFacts reads what the guards need about a Kubernetes target.
func (env *Env) gatherFacts(ctx context.Context, t Target, f *Facts) error {
	switch t.Kind {
	case "Pod":
		var pod *corev1.Pod
		if err := env.kubeDo(ctx, "get pod", func(ctx context.Context) (err error) {
			pod, err = env.Kube.Pods(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
			return err
		}); err != nil {
			return err
		}
		f.Node = pod.Spec.NodeName
		if maintenanceOn(pod) {
			f.Maintenance = fmt.Sprintf("pod %s/%s has %s", pod.Namespace, pod.Name, MaintenanceAnnotation)
		}
		w, wobj, err := env.ownerOf(ctx, pod)
		if err != nil {
			return err
		}
		if w != nil {
			w.TargetReady = podReady(pod)
			f.Workload = w
			if f.Maintenance == "" && maintenanceOn(wobj) {
				f.Maintenance = fmt.Sprintf("%s %s/%s has %s", w.Kind, w.Namespace, w.Name, MaintenanceAnnotation)
			}
		}
		if f.Maintenance == "" && pod.Spec.NodeName != "" {
			if err := env.nodeMaintenance(ctx, pod.Spec.NodeName, f); err != nil {
				return err
			}
		}
	case "Deployment", "StatefulSet", "DaemonSet":
		w, obj, err := env.workload(ctx, t.Kind, t.Namespace, t.Name)
		if err != nil {
			return err
		}
		f.Workload = w
		if maintenanceOn(obj) {
			f.Maintenance = fmt.Sprintf("%s %s/%s has %s", t.Kind, t.Namespace, t.Name, MaintenanceAnnotation)
		}
	case "Node":
		f.Node = t.Name
		return env.nodeMaintenance(ctx, t.Name, f)
	}
	return nil
}

func (env *Env) nodeMaintenance(ctx context.Context, name string, f *Facts) error {
	var node *corev1.Node
	if err := env.kubeDo(ctx, "get node", func(ctx context.Context) (err error) {
		node, err = env.Kube.Nodes().Get(ctx, name, metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	if maintenanceOn(node) {
		f.Maintenance = fmt.Sprintf("node %s has %s", name, MaintenanceAnnotation)
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ownerOf follows a pod's controller reference to its Deployment,
// StatefulSet or DaemonSet; nil for a bare pod.
func (env *Env) ownerOf(ctx context.Context, pod *corev1.Pod) (*WorkloadFacts, metav1.Object, error) {
	kind, name, err := env.ownerRef(ctx, pod)
	if err != nil || kind == "" {
		return nil, nil, err
	}
	return env.workload(ctx, kind, pod.Namespace, name)
}

// ownerRef names a pod's top-level controller (Deployment through its
// ReplicaSet, StatefulSet, DaemonSet) without reading it; "" for a bare
// pod or another controller.
func (env *Env) ownerRef(ctx context.Context, pod *corev1.Pod) (kind, name string, err error) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return "", "", nil
	}
	kind, name = ref.Kind, ref.Name
	if kind == "ReplicaSet" {
		var rs *appsv1.ReplicaSet
		if err := env.kubeDo(ctx, "get replicaset", func(ctx context.Context) (err error) {
			rs, err = env.Kube.ReplicaSets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
			return err
		}); err != nil {
			return "", "", err
		}
		dref := metav1.GetControllerOf(rs)
		if dref == nil || dref.Kind != "Deployment" {
			return "", "", nil
		}
		kind, name = "Deployment", dref.Name
	}
	switch kind {
	case "Deployment", "StatefulSet", "DaemonSet":
		return kind, name, nil
	}
	return "", "", nil
}

// workload reads a workload, counts its unavailable pods and tells whether
// it is mid-rollout (the controller has not seen the latest spec, or not
// every replica runs the latest template yet).
func (env *Env) workload(ctx context.Context, kind, ns, name string) (*WorkloadFacts, metav1.Object, error) {
	w := &WorkloadFacts{Kind: kind, Namespace: ns, Name: name}
	var obj metav1.Object
	var sel *metav1.LabelSelector
	err := env.kubeDo(ctx, "get "+strings.ToLower(kind), func(ctx context.Context) error {
		apps := env.Kube
		switch kind {
		case "Deployment":
			d, err := apps.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			obj, sel = d, d.Spec.Selector
			w.Replicas = int(ptrOr(d.Spec.Replicas, 1))
			s := d.Status
			switch {
			case d.Generation > s.ObservedGeneration:
				w.RollingOut = "spec change not yet observed"
			case s.UpdatedReplicas < int32(w.Replicas):
				w.RollingOut = fmt.Sprintf("%d of %d replicas updated", s.UpdatedReplicas, w.Replicas)
			case s.Replicas > s.UpdatedReplicas:
				w.RollingOut = fmt.Sprintf("%d old replicas pending termination", s.Replicas-s.UpdatedReplicas)
			}
		case "StatefulSet":
			s, err := apps.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			obj, sel = s, s.Spec.Selector
			w.Replicas = int(ptrOr(s.Spec.Replicas, 1))
			switch {
			case s.Generation > s.Status.ObservedGeneration:
				w.RollingOut = "spec change not yet observed"
			case s.Status.UpdateRevision != "" && s.Status.CurrentRevision != s.Status.UpdateRevision:
				w.RollingOut = fmt.Sprintf("%d of %d replicas updated", s.Status.UpdatedReplicas, w.Replicas)
			}
		case "DaemonSet":
			d, err := apps.DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			obj, sel = d, d.Spec.Selector
			w.Replicas = int(d.Status.DesiredNumberScheduled)
			switch {
			case d.Generation > d.Status.ObservedGeneration:
				w.RollingOut = "spec change not yet observed"
			case d.Status.UpdatedNumberScheduled < d.Status.DesiredNumberScheduled:
				w.RollingOut = fmt.Sprintf("%d of %d pods updated", d.Status.UpdatedNumberScheduled, d.Status.DesiredNumberScheduled)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s/%s selector: %w", kind, ns, name, err)
	}
	var pods *corev1.PodList
	if err := env.kubeDo(ctx, "list pods", func(ctx context.Context) (err error) {
		pods, err = env.Kube.Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
		return err
	}); err != nil {
		return nil, nil, err
	}
	ready := 0
	for i := range pods.Items {
		if podReady(&pods.Items[i]) {
			ready++
		}
	}
	if w.Replicas > ready {
		w.Unavailable = w.Replicas - ready
	}
	return w, obj, nil
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// ownerSelector returns the selector of a pod's controller.
func (env *Env) ownerSelector(ctx context.Context, pod *corev1.Pod) (*metav1.LabelSelector, error) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return nil, fmt.Errorf("pod %s/%s has no controller to quarantine it from", pod.Namespace, pod.Name)
	}
	var sel *metav1.LabelSelector
	err := env.kubeDo(ctx, "get owner", func(ctx context.Context) error {
		apps := env.Kube
		switch ref.Kind {
		case "ReplicaSet":
			o, err := apps.ReplicaSets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err == nil {
				sel = o.Spec.Selector
			}
			return err
		case "StatefulSet":
			o, err := apps.StatefulSets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err == nil {
				sel = o.Spec.Selector
			}
			return err
		case "DaemonSet":
			o, err := apps.DaemonSets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err == nil {
				sel = o.Spec.Selector
			}
			return err
		}
		return fmt.Errorf("pod %s/%s is controlled by a %s, which quarantine does not handle", pod.Namespace, pod.Name, ref.Kind)
	})
	if err != nil {
		return nil, err
	}
	if sel == nil {
		return nil, fmt.Errorf("pod %s/%s: its %s has no selector", pod.Namespace, pod.Name, ref.Kind)
	}
	return sel, nil
}

// hostMaintenance reports the maintenance file, if present.
func hostMaintenance(file string) string {
	if file == "" {
		return ""
	}
	if _, err := os.Stat(file); err == nil {
		return "maintenance file " + file + " exists"
	}
	return ""
}
