// Package kube is the Kubernetes metadata collector. It keeps an informer on
// the pods scheduled to this node (field selector spec.nodeName) and a
// metadata-only informer on ReplicaSets, and enriches every workload
// identity the other collectors report (pod UID or container ID, derived
// from cgroup paths) with the pod's namespace, name, container name and
// top-level owner — a Deployment resolved through its ReplicaSet — from
// memory, without an API call per event.
//
// It registers as the "kube" collector, enabled by default only when the
// agent runs inside a cluster (KUBERNETES_SERVICE_HOST is set); giving a
// collectors.kube section (for example with a kubeconfig) enables it
// anywhere. At Start it offers itself through Settings.ProvideEnricher and
// withdraws at Shutdown. Each scrape it exports
// vigil_kube_pod_info{namespace,pod,pod_uid,owner_kind,owner_name,node} so
// PromQL can join any pod_uid-labelled series to its pod and owner.
package kube
