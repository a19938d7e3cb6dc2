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

// OpenTelemetry semantic-convention attribute names Vigil sets. The
// workload's come from collectors/workload, which maps an identity to them
// for every signal.
const (
	AttrServiceName       = workload.AttrServiceName
	AttrServiceInstanceID = "service.instance.id"
	AttrHostName          = "host.name"
	AttrHostID            = "host.id"
	AttrOSType            = "os.type"
	AttrK8sNodeName       = "k8s.node.name"
	AttrK8sNamespaceName  = workload.AttrK8sNamespaceName
	AttrK8sPodName        = workload.AttrK8sPodName
	AttrK8sPodUID         = workload.AttrK8sPodUID
	AttrK8sContainerName  = workload.AttrK8sContainerName
	AttrContainerID       = workload.AttrContainerID
	AttrSystemdUnit       = workload.AttrSystemdUnit
)

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
