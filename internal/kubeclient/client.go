// Package kubeclient is the part of the Kubernetes API the agent calls,
// built on client-go's REST client over a scheme of only the groups Vigil
// uses: core/v1, apps/v1, autoscaling/v1 (the scale subresource),
// policy/v1 and coordination.k8s.io/v1.
//
// client-go's typed clientset (k8s.io/client-go/kubernetes) would do the
// same, but its scheme registers every API group, so every group's types,
// generated conversions and clients link into the agent: about 12 MB of
// the stripped binary (docs/cost.md). Requests here are the ones the typed
// clients send, verb for verb, so RBAC, user agent, rate limits and
// errors (k8s.io/apimachinery/pkg/api/errors) are unchanged.
package kubeclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	// Unversioned meta types (Status, WatchEvent, the options) as
	// client-go's own scheme registers them.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme,
		policyv1.AddToScheme, coordinationv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
}

// Client reaches the API groups the agent uses. A nil *Client is not
// usable; callers keep nil for "no Kubernetes".
type Client struct {
	core, apps, policy, coordination rest.Interface
}

// New builds a client from rc as kubernetes.NewForConfig does: one HTTP
// transport shared by all groups, and, when rc sets QPS without a rate
// limiter, one token bucket shared by all groups.
func New(rc *rest.Config) (*Client, error) {
	cfg := *rc
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	hc, err := rest.HTTPClientFor(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		if cfg.Burst <= 0 {
			return nil, errors.New("burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0")
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	ns := rest.CodecFactoryForGeneratedClient(scheme, codecs).WithoutConversion()
	c := &Client{}
	for _, g := range []struct {
		dst  *rest.Interface
		gv   schema.GroupVersion
		path string
	}{
		{&c.core, corev1.SchemeGroupVersion, "/api"},
		{&c.apps, appsv1.SchemeGroupVersion, "/apis"},
		{&c.policy, policyv1.SchemeGroupVersion, "/apis"},
		{&c.coordination, coordinationv1.SchemeGroupVersion, "/apis"},
	} {
		gc := cfg
		gv := g.gv
		gc.GroupVersion, gc.APIPath, gc.NegotiatedSerializer = &gv, g.path, ns
		rcl, err := rest.RESTClientForConfigAndClient(&gc, hc)
		if err != nil {
			return nil, fmt.Errorf("%s client: %w", gv, err)
		}
		*g.dst = rcl
	}
	return c, nil
}

// Pods in namespace ns ("" for all namespaces).
func (c *Client) Pods(ns string) *Resource[*corev1.Pod, *corev1.PodList] {
	return newResource(c.core, "pods", ns, func() *corev1.Pod { return new(corev1.Pod) }, func() *corev1.PodList { return new(corev1.PodList) })
}

// Nodes of the cluster.
func (c *Client) Nodes() *Resource[*corev1.Node, *corev1.NodeList] {
	return newResource(c.core, "nodes", "", func() *corev1.Node { return new(corev1.Node) }, func() *corev1.NodeList { return new(corev1.NodeList) })
}

// Services in namespace ns ("" for all namespaces).
func (c *Client) Services(ns string) *Resource[*corev1.Service, *corev1.ServiceList] {
	return newResource(c.core, "services", ns, func() *corev1.Service { return new(corev1.Service) }, func() *corev1.ServiceList { return new(corev1.ServiceList) })
}

// Events (core/v1) in namespace ns.
func (c *Client) Events(ns string) *Resource[*corev1.Event, *corev1.EventList] {
	return newResource(c.core, "events", ns, func() *corev1.Event { return new(corev1.Event) }, func() *corev1.EventList { return new(corev1.EventList) })
}

// Deployments in namespace ns, with their scale subresource.
func (c *Client) Deployments(ns string) *Scalable[*appsv1.Deployment, *appsv1.DeploymentList] {
	return &Scalable[*appsv1.Deployment, *appsv1.DeploymentList]{newResource(c.apps, "deployments", ns,
		func() *appsv1.Deployment { return new(appsv1.Deployment) }, func() *appsv1.DeploymentList { return new(appsv1.DeploymentList) })}
}

// StatefulSets in namespace ns, with their scale subresource.
func (c *Client) StatefulSets(ns string) *Scalable[*appsv1.StatefulSet, *appsv1.StatefulSetList] {
	return &Scalable[*appsv1.StatefulSet, *appsv1.StatefulSetList]{newResource(c.apps, "statefulsets", ns,
		func() *appsv1.StatefulSet { return new(appsv1.StatefulSet) }, func() *appsv1.StatefulSetList { return new(appsv1.StatefulSetList) })}
}

// ReplicaSets in namespace ns.
func (c *Client) ReplicaSets(ns string) *Resource[*appsv1.ReplicaSet, *appsv1.ReplicaSetList] {
	return newResource(c.apps, "replicasets", ns, func() *appsv1.ReplicaSet { return new(appsv1.ReplicaSet) }, func() *appsv1.ReplicaSetList { return new(appsv1.ReplicaSetList) })
}

// DaemonSets in namespace ns.
func (c *Client) DaemonSets(ns string) *Resource[*appsv1.DaemonSet, *appsv1.DaemonSetList] {
	return newResource(c.apps, "daemonsets", ns, func() *appsv1.DaemonSet { return new(appsv1.DaemonSet) }, func() *appsv1.DaemonSetList { return new(appsv1.DaemonSetList) })
}

// Leases (coordination.k8s.io/v1) in namespace ns.
func (c *Client) Leases(ns string) *Resource[*coordinationv1.Lease, *coordinationv1.LeaseList] {
	return newResource(c.coordination, "leases", ns, func() *coordinationv1.Lease { return new(coordinationv1.Lease) }, func() *coordinationv1.LeaseList { return new(coordinationv1.LeaseList) })
}

// Evict posts ev to the eviction subresource of the pod it names, so the
// API server honours PodDisruptionBudgets (429 Too Many Requests when one
// forbids it).
func (c *Client) Evict(ctx context.Context, ev *policyv1.Eviction) error {
	return c.policy.Post().
		AbsPath("/api/v1").
		Namespace(ev.Namespace).
		Resource("pods").
		Name(ev.Name).
		SubResource("eviction").
		Body(ev).
		Do(ctx).
		Error()
}

// object is a Kubernetes object of a registered kind.
type object interface {
	runtime.Object
	metav1.Object
}

// Resource is one kind of object in one namespace, or cluster-wide when
// the namespace is "" (all namespaces of a namespaced kind, or a
// cluster-scoped kind). T is the object's pointer type, L its list's.
type Resource[T object, L runtime.Object] struct {
	client    rest.Interface
	resource  string
	namespace string
	newObject func() T
	newList   func() L
}

func newResource[T object, L runtime.Object](client rest.Interface, resource, ns string, newObject func() T, newList func() L) *Resource[T, L] {
	return &Resource[T, L]{client: client, resource: resource, namespace: ns, newObject: newObject, newList: newList}
}

// request starts a request on the resource, in protobuf unless the
// configuration names a content type (as the typed clients do for
// built-in kinds).
func (r *Resource[T, L]) request(req *rest.Request) *rest.Request {
	return req.UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").
		Resource(r.resource)
}

func timeout(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}

// Get reads the object called name.
func (r *Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	out := r.newObject()
	err := r.request(r.client.Get()).Name(name).VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

// List reads the objects opts selects.
func (r *Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newList()
	err := r.request(r.client.Get()).VersionedParams(&opts, parameterCodec).Timeout(timeout(opts)).Do(ctx).Into(out)
	return out, err
}

// Watch streams changes to the objects opts selects.
func (r *Resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.request(r.client.Get()).VersionedParams(&opts, parameterCodec).Timeout(timeout(opts)).Watch(ctx)
}

// Create creates obj and returns the server's copy.
func (r *Resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	out := r.newObject()
	err := r.request(r.client.Post()).VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Update replaces obj (a conflict if its resourceVersion is stale).
func (r *Resource[T, L]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	out := r.newObject()
	err := r.request(r.client.Put()).Name(obj.GetName()).VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// UpdateStatus replaces obj's status subresource.
func (r *Resource[T, L]) UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	out := r.newObject()
	err := r.request(r.client.Put()).Name(obj.GetName()).SubResource("status").VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Delete deletes the object called name.
func (r *Resource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.request(r.client.Delete()).Name(name).Body(&opts).Do(ctx).Error()
}

// Patch applies a patch of type pt to the object called name.
func (r *Resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions) (T, error) {
	out := r.newObject()
	err := r.request(r.client.Patch(pt)).Name(name).VersionedParams(&opts, parameterCodec).Body(data).Do(ctx).Into(out)
	return out, err
}

// Scalable is a Resource with a scale subresource (Deployments,
// StatefulSets).
type Scalable[T object, L runtime.Object] struct {
	*Resource[T, L]
}

// GetScale reads the scale subresource of the object called name.
func (s *Scalable[T, L]) GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error) {
	out := new(autoscalingv1.Scale)
	err := s.request(s.client.Get()).Name(name).SubResource("scale").VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

// UpdateScale replaces the scale subresource of the object called name.
func (s *Scalable[T, L]) UpdateScale(ctx context.Context, name string, scale *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error) {
	out := new(autoscalingv1.Scale)
	err := s.request(s.client.Put()).Name(name).SubResource("scale").VersionedParams(&opts, parameterCodec).Body(scale).Do(ctx).Into(out)
	return out, err
}
