package exporters

import (
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// OpenTelemetry semantic-convention attribute names Vigil sets.
const (
	AttrServiceName       = "service.name"
	AttrServiceInstanceID = "service.instance.id"
	AttrHostName          = "host.name"
	AttrHostID            = "host.id"
	AttrOSType            = "os.type"
	AttrK8sNodeName       = "k8s.node.name"
	AttrK8sNamespaceName  = "k8s.namespace.name"
	AttrK8sPodName        = "k8s.pod.name"
	AttrK8sPodUID         = "k8s.pod.uid"
	AttrK8sContainerName  = "k8s.container.name"
	AttrContainerID       = "container.id"
	// AttrSystemdUnit has no semantic convention yet; Vigil uses this name
	// for a plain host's workload.
	AttrSystemdUnit = "systemd.unit"
)

// ownerAttr maps a pod owner's kind to its semantic-convention attribute.
var ownerAttr = map[string]string{
	"Deployment":  "k8s.deployment.name",
	"ReplicaSet":  "k8s.replicaset.name",
	"StatefulSet": "k8s.statefulset.name",
	"DaemonSet":   "k8s.daemonset.name",
	"Job":         "k8s.job.name",
	"CronJob":     "k8s.cronjob.name",
}

// Metric label names that carry a workload's owner, when a collector adds
// them next to workload.LabelNames.
const (
	LabelOwnerKind = "owner_kind"
	LabelOwnerName = "owner_name"
)

// workloadLabels are the /metrics label names that identify a workload;
// they become resource attributes in OTLP.
var workloadLabels = func() map[string]bool {
	m := map[string]bool{LabelOwnerKind: true, LabelOwnerName: true}
	for _, n := range workload.LabelNames {
		m[n] = true
	}
	return m
}()

// NodeResource is the identity of this node, set on every resource Vigil
// exports.
type NodeResource struct {
	HostName string
	HostID   string
	OSType   string
	// K8sNodeName is set when the agent runs in Kubernetes.
	K8sNodeName string
	// Extra attributes from the configuration; they override the above.
	Extra map[string]string
}

// DetectNode finds this node's identity: the hostname, the machine ID from
// machineIDFile, the OS, and the Kubernetes node name when the agent runs in
// a pod (KUBERNETES_SERVICE_HOST set) or nodeName differs from the
// hostname.
func DetectNode(nodeName, machineIDFile string, extra map[string]string) NodeResource {
	h, _ := os.Hostname()
	n := NodeResource{HostName: h, OSType: runtime.GOOS, Extra: extra}
	if b, err := os.ReadFile(machineIDFile); err == nil {
		n.HostID = strings.TrimSpace(string(b))
	}
	if nodeName != "" && (os.Getenv("KUBERNETES_SERVICE_HOST") != "" || nodeName != h) {
		n.K8sNodeName = nodeName
	}
	if n.HostName == "" {
		n.HostName = nodeName
	}
	return n
}

// Apply sets the node's attributes on attrs, keeping attributes already
// there except those the configuration names.
func (n NodeResource) Apply(attrs pcommon.Map) {
	put := func(k, v string) {
		if v == "" {
			return
		}
		if _, ok := attrs.Get(k); !ok {
			attrs.PutStr(k, v)
		}
	}
	put(AttrHostName, n.HostName)
	put(AttrHostID, n.HostID)
	put(AttrOSType, n.OSType)
	put(AttrK8sNodeName, n.K8sNodeName)
	put(AttrServiceName, "vigil")
	for _, k := range slices.Sorted(maps.Keys(n.Extra)) {
		attrs.PutStr(k, n.Extra[k])
	}
}

// Labels returns the node identity as /metrics label pairs (semantic
// convention names with dots replaced by underscores).
func (n NodeResource) Labels() (names, values []string) {
	return []string{"host_name", "host_id", "os_type", "k8s_node_name"},
		[]string{n.HostName, n.HostID, n.OSType, n.K8sNodeName}
}

// PutWorkload sets the semantic-convention attributes of a workload
// identity on attrs: k8s.namespace.name, k8s.pod.name, k8s.pod.uid,
// k8s.container.name, container.id, the owner (k8s.deployment.name…),
// systemd.unit, and service.name (the owner, else the pod, the container,
// the unit). Empty fields are left out. Collectors that build spans or log
// records use it so that every signal names a workload the same way.
func PutWorkload(attrs pcommon.Map, id workload.Identity) {
	putWorkload(attrs, func(yield func(string, string) bool) {
		for i, n := range workload.LabelNames {
			if !yield(n, id.Labels()[i]) {
				return
			}
		}
		if id.OwnerKind != "" {
			_ = yield(LabelOwnerKind, id.OwnerKind) && yield(LabelOwnerName, id.OwnerName)
		}
	})
}

// putWorkload maps workload label pairs (workload.LabelNames plus
// owner_kind and owner_name) to resource attributes.
func putWorkload(attrs pcommon.Map, labels func(yield func(string, string) bool)) {
	var pod, container, unit, ownerKind, ownerName string
	for k, v := range labels {
		if v == "" {
			continue
		}
		switch k {
		case "namespace":
			attrs.PutStr(AttrK8sNamespaceName, v)
		case "pod":
			pod = v
			attrs.PutStr(AttrK8sPodName, v)
		case "container":
			container = v
			attrs.PutStr(AttrK8sContainerName, v)
		case "container_id":
			attrs.PutStr(AttrContainerID, v)
		case "pod_uid":
			attrs.PutStr(AttrK8sPodUID, v)
		case "unit":
			unit = v
			attrs.PutStr(AttrSystemdUnit, v)
		case LabelOwnerKind:
			ownerKind = v
		case LabelOwnerName:
			ownerName = v
		}
	}
	if ownerName != "" {
		if a, ok := ownerAttr[ownerKind]; ok {
			attrs.PutStr(a, ownerName)
		}
	}
	svc := ownerName
	for _, c := range []string{pod, container, strings.TrimSuffix(unit, ".service")} {
		if svc == "" {
			svc = c
		}
	}
	if svc != "" {
		attrs.PutStr(AttrServiceName, svc)
	}
}
