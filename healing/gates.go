package healing

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vigil-agent/vigil/internal/kubeclient"
)

// GateOpenedReason is the reason of the readiness-gate condition the agent
// sets True on a new pod of its node.
const GateOpenedReason = "VigilGateOpened"

// gateOpener opens the readiness gate Vigil owns
// (healing.kubernetes.readiness_condition) on the pods of this node that
// declare it in spec.readinessGates and have no such condition yet: it
// sets the condition True, so the kubelet can make the pod Ready.
// reroute_readiness later sets it False to take a pod out of its Services.
// A condition that is set, True or False, by Vigil or anyone, is never
// changed: the write is an update of the status as just read, so the API
// server refuses it (a conflict) if the condition was set meanwhile, and
// the pod is read again. Opening a gate is not a remediation: it runs in
// dry-run too, and is counted, not recorded.
type gateOpener struct {
	kube       *kubeclient.Client
	node       string
	cond       corev1.PodConditionType
	identity   string
	namespaces []string
	logger     *slog.Logger
	opened     prometheus.Counter
	errors     *prometheus.CounterVec
	queue      workqueue.TypedRateLimitingInterface[cache.ObjectName]
}

// gateRetries bounds the attempts to open one pod's gate after a failed
// write; the next change of the pod tries again.
const gateRetries = 5

// run lists and watches the pods of this node (in every namespace, or in
// each of namespaces) and opens their gates until ctx is done.
func (g *gateOpener) run(ctx context.Context) {
	g.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](200*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{})
	namespaces := g.namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	selector := fields.OneTermEqualSelector("spec.nodeName", g.node).String()
	var wg sync.WaitGroup
	for _, ns := range namespaces {
		pods := g.kube.Pods(ns)
		inf := cache.NewSharedIndexInformerWithOptions(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = selector
				return pods.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = selector
				return pods.Watch(ctx, o)
			},
		}, &corev1.Pod{}, cache.SharedIndexInformerOptions{})
		_ = inf.SetTransform(g.trim)
		_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			g.errors.WithLabelValues("watch").Inc()
			g.logger.Warn("cannot list or watch this node's pods to open their readiness gates; retrying",
				"node", g.node, "namespace", ns, "err", err)
		})
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    g.enqueue,
			UpdateFunc: func(_, obj any) { g.enqueue(obj) },
		})
		wg.Add(1)
		go func() { defer wg.Done(); inf.RunWithContext(ctx) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for g.next(ctx) {
		}
	}()
	<-ctx.Done()
	g.queue.ShutDown()
	wg.Wait()
}

// podDone reports whether a pod no longer needs its gate: it is going away
// or has finished.
func podDone(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// needsOpening reports whether the gate of p is Vigil's to open now: p is
// on this node, declares the gate, has no such condition and still runs.
func (g *gateOpener) needsOpening(p *corev1.Pod) bool {
	if p.Spec.NodeName != g.node || podDone(p) {
		return false
	}
	gated := false
	for _, r := range p.Spec.ReadinessGates {
		gated = gated || r.ConditionType == g.cond
	}
	if !gated {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == g.cond {
			return false
		}
	}
	return true
}

// trim keeps only what needsOpening reads, so the cache of this node's
// pods stays small.
func (g *gateOpener) trim(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, ResourceVersion: p.ResourceVersion, DeletionTimestamp: p.DeletionTimestamp},
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status:     corev1.PodStatus{Phase: p.Status.Phase},
	}
	for _, r := range p.Spec.ReadinessGates {
		if r.ConditionType == g.cond {
			out.Spec.ReadinessGates = []corev1.PodReadinessGate{r}
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == g.cond {
			out.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out, nil
}

func (g *gateOpener) enqueue(obj any) {
	if p, ok := obj.(*corev1.Pod); ok && g.needsOpening(p) {
		g.queue.Add(cache.ObjectName{Namespace: p.Namespace, Name: p.Name})
	}
}

// next opens the gate of the next queued pod; false once the queue is shut
// down.
func (g *gateOpener) next(ctx context.Context) bool {
	key, shutdown := g.queue.Get()
	if shutdown {
		return false
	}
	defer g.queue.Done(key)
	err := g.open(ctx, key)
	switch {
	case err == nil || ctx.Err() != nil:
		g.queue.Forget(key)
	case apierrors.IsConflict(err):
		// The pod changed since it was read (the kubelet writes its
		// status often): read it again.
		g.queue.AddRateLimited(key)
	case g.queue.NumRequeues(key) < gateRetries:
		g.errors.WithLabelValues("open").Inc()
		g.logger.Warn("cannot open the readiness gate of a pod; retrying", "pod", key.String(), "condition", g.cond, "err", err)
		g.queue.AddRateLimited(key)
	default:
		g.errors.WithLabelValues("open").Inc()
		g.logger.Error("cannot open the readiness gate of a pod; it stays not Ready until its next change",
			"pod", key.String(), "condition", g.cond, "attempts", gateRetries+1, "err", err)
		g.queue.Forget(key)
	}
	return true
}

// open reads the pod and, if its gate still needs opening, sets the
// condition True through pods/status.
func (g *gateOpener) open(ctx context.Context, key cache.ObjectName) error {
	pods := g.kube.Pods(key.Namespace)
	pod, err := pods.Get(ctx, key.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !g.needsOpening(pod) {
		return nil
	}
	now := metav1.Now()
	setCondition(pod, corev1.PodCondition{Type: g.cond, Status: corev1.ConditionTrue, Reason: GateOpenedReason,
		Message:            fmt.Sprintf("opened by Vigil (%s) for a new pod on node %s; reroute_readiness sets it False to take the pod out of its Services", g.identity, g.node),
		LastTransitionTime: now, LastProbeTime: now})
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{FieldManager: "vigil"}); err != nil {
		return err
	}
	g.opened.Inc()
	g.logger.Debug("readiness gate opened", "pod", key.String(), "condition", g.cond)
	return nil
}
