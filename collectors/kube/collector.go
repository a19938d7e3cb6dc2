package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/component"
	"github.com/vigil-agent/vigil/internal/kubeclient"
)

// On by default only inside a cluster: a plain host has no API server,
// and a collectors.kube section turns it on explicitly.
func init() { component.RegisterCollector("kube", InCluster(), NewConfig, New) }

// InCluster reports whether the process runs in a Kubernetes pod, judged
// as client-go's in-cluster configuration does, by KUBERNETES_SERVICE_HOST.
func InCluster() bool { return os.Getenv("KUBERNETES_SERVICE_HOST") != "" }

const (
	uidIndex       = "uid"
	containerIndex = "containerID"
)

var (
	podInfoDesc = prometheus.NewDesc("vigil_kube_pod_info",
		"A pod scheduled to this node, with its top-level owner (a Deployment is resolved through its ReplicaSet). Always 1; join on pod_uid.",
		[]string{"namespace", "pod", "pod_uid", "owner_kind", "owner_name", "node"}, nil)
	podsDesc = prometheus.NewDesc("vigil_kube_pods",
		"Pods on this node in the collector's cache.", nil, nil)
	watchErrorsDesc = prometheus.NewDesc("vigil_kube_watch_errors_total",
		"List or watch requests that failed (the informer retries with backoff), by resource.", []string{"resource"}, nil)
	enrichDesc = prometheus.NewDesc("vigil_kube_enrich_total",
		"Workload identities looked up for enrichment, by result: hit (pod found on this node) or miss (a pod UID or container ID not in the cache).",
		[]string{"result"}, nil)
)

// scope is the pair of informers for one namespace ("" for all).
type scope struct {
	namespace string
	pods      cache.SharedIndexInformer
	rs        cache.GenericLister
}

// PodInfo is the metadata the collector keeps about one pod on this node.
type PodInfo struct {
	Namespace string
	Name      string
	UID       string
	Node      string
	Labels    map[string]string
	// OwnerKind and OwnerName name the pod's top-level controller: a
	// Deployment for a ReplicaSet's pod once the ReplicaSet is cached, the
	// ReplicaSet itself otherwise, or the StatefulSet, DaemonSet, Job, …
	// that controls it. Both are empty for a bare pod.
	OwnerKind string
	OwnerName string
	// Containers maps container IDs (without the runtime:// prefix) to
	// container names, for init, regular and ephemeral containers.
	Containers map[string]string
}

// Collector watches the pods of one node and enriches workload identities
// with their metadata. It implements collectors.Collector,
// collectors.Lifecycle and workload.Enricher.
type Collector struct {
	cfg    Config
	node   string
	logger *slog.Logger
	set    collectors.Settings

	// newRESTConfig builds the client configuration; tests may replace it.
	newRESTConfig func() (*rest.Config, error)

	mu       sync.Mutex // guards the fields below during Start/Shutdown
	cancel   context.CancelFunc
	stops    []func()
	provided bool

	// scopes are the informers, one pair per watched namespace (or one for
	// all); read without mu.
	scopes atomic.Pointer[[]scope]

	podWatchErrors atomic.Uint64
	rsWatchErrors  atomic.Uint64
	hits, misses   atomic.Uint64
}

// New builds the collector; nothing contacts the API server before Start.
func New(cfg *Config, set collectors.Settings) (*Collector, error) {
	node := cfg.NodeName
	if node == "" {
		node = set.NodeName
	}
	if node == "" {
		return nil, errors.New("kube: the node name is unknown (set global.node_name, $NODE_NAME or collectors.kube.node_name); without it every pod in the cluster would be watched")
	}
	logger := set.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{cfg: *cfg, node: node, logger: logger, set: set}
	c.newRESTConfig = c.restConfig
	return c, nil
}

// NewWithRESTConfig is New with a ready client configuration instead of a
// kubeconfig file or the in-cluster one (for embedding and tests).
func NewWithRESTConfig(cfg *Config, set collectors.Settings, rc *rest.Config) (*Collector, error) {
	c, err := New(cfg, set)
	if err != nil {
		return nil, err
	}
	c.newRESTConfig = func() (*rest.Config, error) { return rest.CopyConfig(rc), nil }
	return c, nil
}

// NodeName returns the node whose pods the collector watches.
func (c *Collector) NodeName() string { return c.node }

// Namespaces returns the namespaces whose pods the collector watches
// (collectors.kube.namespaces; nil: all). The healing engine's
// readiness-gate opener watches the same ones, since under the chart's
// rbac.scope=namespaces the agent may list pods only there.
func (c *Collector) Namespaces() []string { return slices.Clone(c.cfg.Namespaces) }

func (c *Collector) restConfig() (*rest.Config, error) {
	if c.cfg.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", c.cfg.Kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, errors.New("not running in a cluster (KUBERNETES_SERVICE_HOST is unset) and collectors.kube.kubeconfig is empty")
	}
	return rc, err
}

// Start lists and watches this node's pods and all ReplicaSets' metadata,
// waits up to sync_timeout for the first lists, and then provides the
// collector as the agent's Enricher.
func (c *Collector) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errors.New("kube: already started")
	}
	rc, err := c.newRESTConfig()
	if err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	rc.QPS, rc.Burst = c.cfg.QPS, c.cfg.Burst
	rc.UserAgent = "vigil-kube"

	pc := rest.CopyConfig(rc)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	pc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubeclient.New(pc)
	if err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	mc, err := metadata.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kube: %w", err)
	}

	selector := fields.OneTermEqualSelector("spec.nodeName", c.node).String()
	namespaces := c.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var (
		scopes  []scope
		stops   []func()
		synced  []cache.InformerSynced
		npods   int
		stopAll = func() {
			cancel()
			for _, stop := range stops {
				stop()
			}
		}
	)
	for _, ns := range namespaces {
		// Both informers are built directly, not through client-go's
		// informers factories: those link an informer and a lister for
		// every API group, and the typed clientset with them (docs/cost.md).
		podClient := cs.Pods(ns)
		pods := cache.NewSharedIndexInformerWithOptions(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = selector
				return podClient.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = selector
				return podClient.Watch(ctx, o)
			},
		}, &corev1.Pod{}, cache.SharedIndexInformerOptions{
			ResyncPeriod: c.cfg.ResyncPeriod,
			Indexers:     cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc, uidIndex: indexByUID, containerIndex: indexByContainerID},
		})
		_ = pods.SetTransform(trimPod)
		_ = pods.SetWatchErrorHandler(c.watchErrorHandler("pods", &c.podWatchErrors))

		rsClient := mc.Resource(appsv1.SchemeGroupVersion.WithResource("replicasets")).Namespace(ns)
		rs := cache.NewSharedIndexInformerWithOptions(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return rsClient.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return rsClient.Watch(ctx, o)
			},
		}, &metav1.PartialObjectMetadata{}, cache.SharedIndexInformerOptions{
			ResyncPeriod: c.cfg.ResyncPeriod,
			Indexers:     cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		})
		_ = rs.SetTransform(trimMeta)
		_ = rs.SetWatchErrorHandler(c.watchErrorHandler("replicasets", &c.rsWatchErrors))

		for _, inf := range []cache.SharedIndexInformer{pods, rs} {
			done := make(chan struct{})
			go func() {
				defer close(done)
				inf.RunWithContext(runCtx)
			}()
			stops = append(stops, func() { <-done })
		}
		synced = append(synced, pods.HasSynced, rs.HasSynced)
		scopes = append(scopes, scope{namespace: ns, pods: pods, rs: cache.NewGenericLister(rs.GetIndexer(), appsv1.Resource("replicasets"))})
	}

	syncCtx, syncCancel := context.WithTimeout(ctx, c.cfg.SyncTimeout)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), synced...) {
		stopAll()
		return fmt.Errorf("kube: pods on node %q and ReplicaSets not listed within %s (vigil_kube_watch_errors_total counts the failed requests; check the API server address and the ServiceAccount's RBAC)",
			c.node, c.cfg.SyncTimeout)
	}
	for _, s := range scopes {
		npods += len(s.pods.GetStore().ListKeys())
	}
	c.scopes.Store(&scopes)
	c.cancel, c.stops = cancel, stops
	if c.set.ProvideEnricher != nil {
		c.set.ProvideEnricher(c)
		c.provided = true
	}
	c.logger.Info("watching pods", "node", c.node, "namespaces", c.cfg.Namespaces, "pods", npods, "server", rc.Host)
	return nil
}

// Shutdown withdraws the enricher and stops the informers. It is safe
// before Start and when Start failed.
func (c *Collector) Shutdown(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provided {
		c.set.ProvideEnricher(nil)
		c.provided = false
	}
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	for _, stop := range c.stops {
		stop()
	}
	c.cancel, c.stops = nil, nil
	c.scopes.Store(nil)
	return nil
}

func (c *Collector) watchErrorHandler(resource string, n *atomic.Uint64) cache.WatchErrorHandler {
	return func(_ *cache.Reflector, err error) {
		n.Add(1)
		c.logger.Warn("list/watch failed; retrying", "resource", resource, "node", c.node, "err", err)
	}
}

// Update sends one vigil_kube_pod_info series per cached pod and the
// collector's own counters.
func (c *Collector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	ch <- prometheus.MustNewConstMetric(watchErrorsDesc, prometheus.CounterValue, float64(c.podWatchErrors.Load()), "pods")
	ch <- prometheus.MustNewConstMetric(watchErrorsDesc, prometheus.CounterValue, float64(c.rsWatchErrors.Load()), "replicasets")
	ch <- prometheus.MustNewConstMetric(enrichDesc, prometheus.CounterValue, float64(c.hits.Load()), "hit")
	ch <- prometheus.MustNewConstMetric(enrichDesc, prometheus.CounterValue, float64(c.misses.Load()), "miss")
	sc := c.scopes.Load()
	if sc == nil {
		return errors.New("kube: not started")
	}
	var objs []any
	for _, s := range *sc {
		objs = append(objs, s.pods.GetStore().List()...)
	}
	ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(len(objs)))
	for _, o := range objs {
		pod := o.(*corev1.Pod)
		kind, name := c.owner(pod)
		ch <- prometheus.MustNewConstMetric(podInfoDesc, prometheus.GaugeValue, 1,
			pod.Namespace, pod.Name, string(pod.UID), kind, name, pod.Spec.NodeName)
	}
	return nil
}

// Enrich implements workload.Enricher: an identity with a pod UID (or only
// a container ID) of a pod on this node gets the pod's namespace, name,
// owner and the container's name. Fields already set are kept. It reads
// only the informers' caches.
func (c *Collector) Enrich(id *workload.Identity) {
	pod := c.lookup(id.PodUID, id.ContainerID)
	if pod == nil {
		if id.PodUID != "" || id.ContainerID != "" {
			c.misses.Add(1)
		}
		return
	}
	c.hits.Add(1)
	if id.PodUID == "" {
		id.PodUID = string(pod.UID)
	}
	setIfEmpty(&id.Namespace, pod.Namespace)
	setIfEmpty(&id.Pod, pod.Name)
	if id.ContainerID != "" && id.Container == "" {
		id.Container = containerName(pod, id.ContainerID)
	}
	if id.OwnerKind == "" && id.OwnerName == "" {
		id.OwnerKind, id.OwnerName = c.owner(pod)
	}
}

// Pod returns what the collector knows about the pod with the given UID,
// if it is on this node.
func (c *Collector) Pod(uid string) (PodInfo, bool) {
	pod := c.lookup(uid, "")
	if pod == nil {
		return PodInfo{}, false
	}
	info := PodInfo{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Node: pod.Spec.NodeName,
		Labels: make(map[string]string, len(pod.Labels)), Containers: map[string]string{}}
	for k, v := range pod.Labels {
		info.Labels[k] = v
	}
	info.OwnerKind, info.OwnerName = c.owner(pod)
	eachContainerStatus(pod, func(s *corev1.ContainerStatus) {
		if id := trimContainerID(s.ContainerID); id != "" {
			info.Containers[id] = s.Name
		}
	})
	return info, true
}

func setIfEmpty(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func (c *Collector) lookup(uid, containerID string) *corev1.Pod {
	sc := c.scopes.Load()
	if sc == nil {
		return nil
	}
	for _, s := range *sc {
		idx := s.pods.GetIndexer()
		var objs []any
		switch {
		case uid != "":
			objs, _ = idx.ByIndex(uidIndex, uid)
		case containerID != "":
			objs, _ = idx.ByIndex(containerIndex, containerID)
		}
		if len(objs) > 0 {
			return objs[0].(*corev1.Pod)
		}
	}
	return nil
}

// owner resolves a pod's controller to its top-level owner from the
// ReplicaSet cache.
func (c *Collector) owner(pod *corev1.Pod) (kind, name string) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return "", ""
	}
	if ref.Kind != "ReplicaSet" || !strings.HasPrefix(ref.APIVersion, "apps/") {
		return ref.Kind, ref.Name
	}
	sc := c.scopes.Load()
	if sc == nil {
		return ref.Kind, ref.Name
	}
	var obj any
	for _, s := range *sc {
		if s.namespace != metav1.NamespaceAll && s.namespace != pod.Namespace {
			continue
		}
		if o, err := s.rs.ByNamespace(pod.Namespace).Get(ref.Name); err == nil {
			obj = o
			break
		}
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return ref.Kind, ref.Name
	}
	if up := metav1.GetControllerOfNoCopy(m); up != nil && up.Kind == "Deployment" {
		return up.Kind, up.Name
	}
	return ref.Kind, ref.Name
}

func containerName(pod *corev1.Pod, containerID string) string {
	name := ""
	eachContainerStatus(pod, func(s *corev1.ContainerStatus) {
		if name == "" && trimContainerID(s.ContainerID) == containerID {
			name = s.Name
		}
	})
	return name
}

func eachContainerStatus(pod *corev1.Pod, f func(*corev1.ContainerStatus)) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			f(&list[i])
		}
	}
}

// trimContainerID strips the "<runtime>://" prefix the kubelet puts on
// container IDs, leaving the ID the cgroup path carries.
func trimContainerID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}

func indexByUID(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	return []string{string(pod.UID)}, nil
}

func indexByContainerID(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var ids []string
	eachContainerStatus(pod, func(s *corev1.ContainerStatus) {
		if id := trimContainerID(s.ContainerID); id != "" {
			ids = append(ids, id)
		}
	})
	return ids, nil
}

// trimPod keeps only what enrichment needs, so a node with many pods costs
// little memory: metadata without managed fields and annotations,
// spec.nodeName, and the container statuses' names and IDs.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion, Labels: pod.Labels,
			OwnerReferences: pod.OwnerReferences, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{NodeName: pod.Spec.NodeName},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	trim := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		if len(in) == 0 {
			return nil
		}
		o := make([]corev1.ContainerStatus, len(in))
		for i := range in {
			o[i] = corev1.ContainerStatus{Name: in[i].Name, ContainerID: in[i].ContainerID}
		}
		return o
	}
	out.Status.InitContainerStatuses = trim(pod.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = trim(pod.Status.ContainerStatuses)
	out.Status.EphemeralContainerStatuses = trim(pod.Status.EphemeralContainerStatuses)
	return out, nil
}

// trimMeta drops managed fields and annotations from ReplicaSet metadata;
// only owner references are used.
func trimMeta(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		m.ManagedFields = nil
		m.Annotations = nil
		m.Labels = nil
	}
	return obj, nil
}
