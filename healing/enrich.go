package healing

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-agent/vigil/rules"
)

// Labels the engine adds to an alert before matching it against the
// policies (Kubernetes only).
const (
	// LabelOwnerKind and LabelOwnerName name the top-level controller of
	// the alert's pod (namespace and pod labels): Deployment (through its
	// ReplicaSet), StatefulSet or DaemonSet.
	LabelOwnerKind = "owner_kind"
	LabelOwnerName = "owner_name"
	// LabelDestination is the "ip:port" ("[ip6]:port") a workload
	// connects to, as the eBPF collector writes it.
	LabelDestination = "destination"
	// LabelDependencyKind is Service or Pod: what the destination
	// resolved to.
	LabelDependencyKind      = "dependency_kind"
	LabelDependencyNamespace = "dependency_namespace"
	LabelDependencyName      = "dependency_name"
	// LabelDependencyPod is set when the destination is a pod IP.
	LabelDependencyPod = "dependency_pod"
	// LabelDependencyOwnerKind and LabelDependencyOwnerName name the
	// controller of the dependency's pods.
	LabelDependencyOwnerKind = "dependency_owner_kind"
	LabelDependencyOwnerName = "dependency_owner_name"
)

// enricher adds owner and dependency labels to alerts from the Kubernetes
// API, caching each answer for a short while.
type enricher struct {
	env    *Env
	ttl    time.Duration
	logger *slog.Logger
	total  *prometheus.CounterVec

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	labels map[string]string
	until  time.Time
}

func newEnricher(env *Env, ttl time.Duration, logger *slog.Logger, total *prometheus.CounterVec) *enricher {
	return &enricher{env: env, ttl: ttl, logger: logger, total: total, cache: map[string]cached{}}
}

// needsEnrichment reports whether a firing alert lacks labels the
// enricher could add.
func needsEnrichment(l map[string]string) bool {
	return (l["namespace"] != "" && l["pod"] != "" && l[LabelOwnerName] == "") ||
		(l[LabelDestination] != "" && l[LabelDependencyKind] == "")
}

// enrich returns a copy of l with the owner and dependency labels it could
// find. A lookup that fails (or times out with ctx) is logged and counted
// and leaves its labels out; l's own labels are never overwritten.
func (en *enricher) enrich(ctx context.Context, alert string, l map[string]string) map[string]string {
	out := maps.Clone(l)
	add := func(extra map[string]string) {
		for k, v := range extra {
			if _, ok := out[k]; !ok && v != "" {
				out[k] = v
			}
		}
	}
	if ns, pod := l["namespace"], l["pod"]; ns != "" && pod != "" && l[LabelOwnerName] == "" {
		add(en.lookup(ctx, "owner", "owner\x00"+ns+"\x00"+pod, alert, func(ctx context.Context) (map[string]string, error) {
			return en.owner(ctx, ns, pod)
		}))
	}
	if dst := l[LabelDestination]; dst != "" && l[LabelDependencyKind] == "" {
		add(en.lookup(ctx, "dependency", "dependency\x00"+dst, alert, func(ctx context.Context) (map[string]string, error) {
			return en.dependency(ctx, dst)
		}))
	}
	return out
}

// lookup answers from the cache or runs f, counting the result in
// vigil_healing_enrichments_total{lookup,result}.
func (en *enricher) lookup(ctx context.Context, what, key, alert string, f func(context.Context) (map[string]string, error)) map[string]string {
	now := time.Now()
	en.mu.Lock()
	c, ok := en.cache[key]
	en.mu.Unlock()
	if ok && now.Before(c.until) {
		en.total.WithLabelValues(what, "cached").Inc()
		return c.labels
	}
	got, err := f(ctx)
	if err != nil {
		en.total.WithLabelValues(what, "error").Inc()
		en.logger.Warn("alert enrichment failed; matching the alert without these labels",
			"lookup", what, "alert", alert, "err", err)
		return nil
	}
	result := "found"
	if len(got) == 0 {
		result = "not_found"
	}
	en.total.WithLabelValues(what, result).Inc()
	if en.ttl > 0 {
		en.mu.Lock()
		// Expired entries go when the cache grows: it holds at most the
		// pods and destinations alerted on within one TTL.
		if len(en.cache) > 4096 {
			for k, v := range en.cache {
				if now.After(v.until) {
					delete(en.cache, k)
				}
			}
		}
		en.cache[key] = cached{labels: got, until: now.Add(en.ttl)}
		en.mu.Unlock()
	}
	return got
}

// owner returns owner_kind and owner_name of a pod's top-level
// controller; nothing for a missing or bare pod.
func (en *enricher) owner(ctx context.Context, ns, name string) (map[string]string, error) {
	var pod *corev1.Pod
	err := en.env.kubeDo(ctx, "get pod", func(ctx context.Context) (err error) {
		pod, err = en.env.Kube.Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return en.podOwner(ctx, pod, LabelOwnerKind, LabelOwnerName)
}

func (en *enricher) podOwner(ctx context.Context, pod *corev1.Pod, kindLabel, nameLabel string) (map[string]string, error) {
	kind, name, err := en.env.ownerRef(ctx, pod)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil || kind == "" {
		return nil, err
	}
	return map[string]string{kindLabel: kind, nameLabel: name}, nil
}

// dependency resolves "ip:port" to the Service whose cluster IP and port
// match, else to the pod with that IP, and either's owner.
func (en *enricher) dependency(ctx context.Context, dst string) (map[string]string, error) {
	host, portStr, err := net.SplitHostPort(dst)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", dst, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", dst, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("destination %q: bad port: %w", dst, err)
	}
	svc, err := en.service(ctx, ip, int32(port))
	if err != nil {
		return nil, err
	}
	if svc != nil {
		out := map[string]string{
			LabelDependencyKind: "Service", LabelDependencyNamespace: svc.Namespace, LabelDependencyName: svc.Name,
		}
		if len(svc.Spec.Selector) > 0 {
			var pods *corev1.PodList
			if err := en.env.kubeDo(ctx, "list pods", func(ctx context.Context) (err error) {
				pods, err = en.env.Kube.Pods(svc.Namespace).List(ctx, metav1.ListOptions{
					LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
				return err
			}); err != nil {
				return nil, err
			}
			for i := range pods.Items {
				if pods.Items[i].DeletionTimestamp != nil {
					continue
				}
				o, err := en.podOwner(ctx, &pods.Items[i], LabelDependencyOwnerKind, LabelDependencyOwnerName)
				if err != nil {
					return nil, err
				}
				maps.Copy(out, o)
				break
			}
		}
		return out, nil
	}
	var pods *corev1.PodList
	if err := en.env.kubeDo(ctx, "list pods by IP", func(ctx context.Context) (err error) {
		pods, err = en.env.Kube.Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.podIP=" + ip.String()})
		return err
	}); err != nil {
		return nil, err
	}
	// Host-network pods share their node's IP: they name no single
	// dependency.
	var found []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if !p.Spec.HostNetwork && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return nil, nil
	}
	p := found[0]
	out := map[string]string{
		LabelDependencyKind: "Pod", LabelDependencyNamespace: p.Namespace, LabelDependencyName: p.Name, LabelDependencyPod: p.Name,
	}
	o, err := en.podOwner(ctx, p, LabelDependencyOwnerKind, LabelDependencyOwnerName)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, o)
	return out, nil
}

// service finds the Service with cluster IP ip and a port equal to port.
// It asks the API server with the spec.clusterIP field selector (the
// primary cluster IP); a server that refuses that selector gets a full
// list, matched against every family's cluster IP.
func (en *enricher) service(ctx context.Context, ip netip.Addr, port int32) (*corev1.Service, error) {
	match := func(l *corev1.ServiceList) *corev1.Service {
		for i := range l.Items {
			s := &l.Items[i]
			ips := s.Spec.ClusterIPs
			if len(ips) == 0 {
				ips = []string{s.Spec.ClusterIP}
			}
			hit := slices.ContainsFunc(ips, func(v string) bool {
				a, err := netip.ParseAddr(v)
				return err == nil && a == ip
			})
			if !hit {
				continue
			}
			for _, p := range s.Spec.Ports {
				if p.Port == port {
					return s
				}
			}
		}
		return nil
	}
	var list *corev1.ServiceList
	err := en.env.kubeDo(ctx, "list services", func(ctx context.Context) (err error) {
		list, err = en.env.Kube.Services("").List(ctx, metav1.ListOptions{FieldSelector: "spec.clusterIP=" + ip.String()})
		if apierrors.IsBadRequest(err) {
			return permanent(err)
		}
		return err
	})
	if err == nil || !apierrors.IsBadRequest(err) {
		if err != nil {
			return nil, err
		}
		return match(list), nil
	}
	if err := en.env.kubeDo(ctx, "list services", func(ctx context.Context) (err error) {
		list, err = en.env.Kube.Services("").List(ctx, metav1.ListOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	return match(list), nil
}

// enrichAlert runs the enricher on a firing alert with the configured
// timeout; without Kubernetes or a need it returns the alert unchanged.
func (e *Engine) enrichAlert(a rules.Alert) rules.Alert {
	cfg := e.cfg.Load()
	ctx, cancel := context.WithTimeout(e.ctx, cfg.Kubernetes.EnrichTimeout)
	defer cancel()
	a.Labels = e.enr.enrich(ctx, a.Name(), a.Labels)
	return a
}
