package workload

import (
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// OpenTelemetry semantic-convention resource attribute names of a
// workload.
const (
	AttrServiceName      = "service.name"
	AttrK8sNamespaceName = "k8s.namespace.name"
	AttrK8sPodName       = "k8s.pod.name"
	AttrK8sPodUID        = "k8s.pod.uid"
	AttrK8sContainerName = "k8s.container.name"
	AttrContainerID      = "container.id"
	// AttrSystemdUnit has no semantic convention yet; Vigil uses this name
	// for a plain host's workload.
	AttrSystemdUnit = "systemd.unit"
)

// OwnerAttribute returns the semantic-convention attribute that names a
// pod's owner of the given kind (k8s.deployment.name for "Deployment", …),
// or "" for a kind without one.
func OwnerAttribute(kind string) string {
	switch kind {
	case "Deployment":
		return "k8s.deployment.name"
	case "ReplicaSet":
		return "k8s.replicaset.name"
	case "StatefulSet":
		return "k8s.statefulset.name"
	case "DaemonSet":
		return "k8s.daemonset.name"
	case "Job":
		return "k8s.job.name"
	case "CronJob":
		return "k8s.cronjob.name"
	}
	return ""
}

// ServiceName returns the service.name the identity gets, in the order the
// OpenTelemetry Kubernetes conventions give: the owner's name (Deployment,
// StatefulSet, …), else the pod's name, else the container's name, else
// the systemd unit without ".service"; "" when none is known.
func (id Identity) ServiceName() string {
	for _, s := range []string{id.OwnerName, id.Pod, id.Container, strings.TrimSuffix(id.SystemdUnit, ".service")} {
		if s != "" {
			return s
		}
	}
	return ""
}

// PutAttributes sets the identity's semantic-convention resource
// attributes on attrs: k8s.namespace.name, k8s.pod.name, k8s.pod.uid,
// k8s.container.name, container.id, the owner (k8s.deployment.name, …),
// systemd.unit, and service.name (see ServiceName). Empty fields are left
// out. Every signal that carries a workload (metrics, spans, log records)
// is labelled through it, so they all name the workload the same way.
func (id Identity) PutAttributes(attrs pcommon.Map) {
	put := func(k, v string) {
		if v != "" {
			attrs.PutStr(k, v)
		}
	}
	put(AttrK8sNamespaceName, id.Namespace)
	put(AttrK8sPodName, id.Pod)
	put(AttrK8sPodUID, id.PodUID)
	put(AttrK8sContainerName, id.Container)
	put(AttrContainerID, id.ContainerID)
	if a := OwnerAttribute(id.OwnerKind); a != "" {
		put(a, id.OwnerName)
	}
	put(AttrSystemdUnit, id.SystemdUnit)
	put(AttrServiceName, id.ServiceName())
}
