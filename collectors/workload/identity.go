// Package workload derives the one identity that every Vigil signal carries
// for the workload it belongs to: container ID and pod UID on a Kubernetes
// node, or the systemd unit on a plain host. The identity is derived from a
// cgroup path, so the cgroup collector, the eBPF collectors and the log
// pipeline all agree on it, and remediation acts on the same object the
// signal came from.
//
// It is the one home of workload identity that every collector shares: the
// Identity type, the Enricher that adds Kubernetes metadata, and (on
// Linux) the Resolver that maps a PID or a cgroup2 ID to an identity. It
// imports no collector, and no collector imports another.
package workload

import (
	"path"
	"strings"
	"sync/atomic"
)

// Identity names the workload a process, cgroup or log stream belongs to.
// Fields that cannot be derived are empty.
type Identity struct {
	// CgroupPath is the cgroup path relative to the hierarchy root, e.g.
	// "/kubepods.slice/kubepods-burstable.slice/…/cri-containerd-<id>.scope".
	CgroupPath string
	// ContainerID is the full container ID (64 hex digits for containerd,
	// CRI-O and Docker).
	ContainerID string
	// Runtime is the container runtime that made the cgroup: "containerd",
	// "cri-o" or "docker".
	Runtime string
	// PodUID is the Kubernetes pod UID in its canonical dashed form.
	PodUID string
	// QoSClass is the pod's QoS class as the kubelet encodes it in the path:
	// "guaranteed", "burstable" or "besteffort".
	QoSClass string
	// SystemdUnit is the innermost systemd unit (service or scope) on a
	// plain host, e.g. "nginx.service".
	SystemdUnit string

	// The fields below are not derived from the cgroup path; Kubernetes
	// metadata enrichment fills them from the pod's object.

	// Namespace is the pod's namespace.
	Namespace string
	// Pod is the pod's name.
	Pod string
	// Container is the container's name within the pod.
	Container string
	// OwnerKind is the kind of the pod's top-level controller, e.g.
	// "Deployment" (resolved through its ReplicaSet), "StatefulSet".
	OwnerKind string
	// OwnerName is the name of that controller.
	OwnerName string
}

// IsContainer reports whether the identity names a container.
func (id Identity) IsContainer() bool { return id.ContainerID != "" }

// IsPod reports whether the identity belongs to a Kubernetes pod.
func (id Identity) IsPod() bool { return id.PodUID != "" }

// String returns a short human-readable name: namespace/pod/container when
// known, then the pod UID, the container ID, the systemd unit, and finally
// the cgroup path.
func (id Identity) String() string {
	switch {
	case id.Pod != "":
		s := id.Namespace + "/" + id.Pod
		if id.Container != "" {
			s += "/" + id.Container
		}
		return s
	case id.PodUID != "":
		s := "pod:" + id.PodUID
		if id.ContainerID != "" {
			s += "/" + shortID(id.ContainerID)
		}
		return s
	case id.ContainerID != "":
		return "container:" + shortID(id.ContainerID)
	case id.SystemdUnit != "":
		return id.SystemdUnit
	case id.CgroupPath != "":
		return id.CgroupPath
	}
	return "unknown"
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Metric label names of a workload identity on Vigil's /metrics.
const (
	LabelNamespace   = "namespace"
	LabelPod         = "pod"
	LabelContainer   = "container"
	LabelContainerID = "container_id"
	LabelPodUID      = "pod_uid"
	LabelUnit        = "unit"
	// LabelOwnerKind and LabelOwnerName name the pod's top-level controller
	// (kind "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", …),
	// as kube-state-metrics' kube_pod_owner names them.
	LabelOwnerKind = "owner_kind"
	LabelOwnerName = "owner_name"
)

// LabelNames are the metric label names that carry a workload identity on
// Vigil's /metrics, in the order Labels returns their values.
var LabelNames = []string{LabelNamespace, LabelPod, LabelContainer, LabelContainerID, LabelPodUID, LabelUnit, LabelOwnerKind, LabelOwnerName}

// Labels returns the values for LabelNames. Empty values are kept so that
// every series of a metric has the same label names.
func (id Identity) Labels() []string {
	return []string{id.Namespace, id.Pod, id.Container, id.ContainerID, id.PodUID, id.SystemdUnit, id.OwnerKind, id.OwnerName}
}

// IsLabel reports whether name is one of LabelNames.
func IsLabel(name string) bool {
	switch name {
	case LabelNamespace, LabelPod, LabelContainer, LabelContainerID, LabelPodUID, LabelUnit, LabelOwnerKind, LabelOwnerName:
		return true
	}
	return false
}

// SetLabel sets the field that the metric label name carries (one of
// LabelNames) to value, and reports whether name is such a label. It is
// the inverse of Labels, for code that reads identities back from series.
func (id *Identity) SetLabel(name, value string) bool {
	switch name {
	case LabelNamespace:
		id.Namespace = value
	case LabelPod:
		id.Pod = value
	case LabelContainer:
		id.Container = value
	case LabelContainerID:
		id.ContainerID = value
	case LabelPodUID:
		id.PodUID = value
	case LabelUnit:
		id.SystemdUnit = value
	case LabelOwnerKind:
		id.OwnerKind = value
	case LabelOwnerName:
		id.OwnerName = value
	default:
		return false
	}
	return true
}

// Enricher adds metadata that the cgroup path does not carry (namespace, pod
// name, container name, owner) to an identity. Implementations must be cheap
// and must not call a remote API per call.
type Enricher interface {
	Enrich(id *Identity)
}

// FromCgroupPath derives an identity from a cgroup path as it appears in
// /proc/<pid>/cgroup or under /sys/fs/cgroup. It understands the kubelet's
// systemd and cgroupfs drivers with containerd, CRI-O and Docker, plain
// Docker containers, and systemd units. Unknown layouts yield an identity
// with only CgroupPath set.
func FromCgroupPath(p string) Identity {
	id := Identity{CgroupPath: p}
	if p == "" || p == "/" {
		return id
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	inKube := false
	for i, part := range parts {
		switch {
		case part == "kubepods" || part == "kubepods.slice":
			inKube = true
		case inKube && (part == "burstable" || part == "besteffort"):
			id.QoSClass = part
		case inKube && strings.HasPrefix(part, "kubepods-") && strings.HasSuffix(part, ".slice"):
			// kubepods-burstable.slice, kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice
			name := strings.TrimSuffix(strings.TrimPrefix(part, "kubepods-"), ".slice")
			if qos, rest, ok := strings.Cut(name, "-"); ok && (qos == "burstable" || qos == "besteffort") {
				id.QoSClass = qos
				name = rest
			} else if name == "burstable" || name == "besteffort" {
				id.QoSClass = name
				continue
			}
			if uid, ok := strings.CutPrefix(name, "pod"); ok {
				// The systemd driver escapes dashes in the UID as underscores.
				id.PodUID = strings.ReplaceAll(uid, "_", "-")
			}
		case inKube && strings.HasPrefix(part, "pod") && isUID(part[3:]):
			id.PodUID = part[3:]
		default:
			if rt, cid, ok := containerScope(part); ok {
				id.Runtime, id.ContainerID = rt, cid
			} else if inKube && id.PodUID != "" && isHexID(part) {
				// cgroupfs driver: /kubepods/<qos>/pod<uid>/<container id>
				id.ContainerID = part
			} else if i > 0 && parts[i-1] == "docker" && isHexID(part) {
				id.Runtime, id.ContainerID = "docker", part
			} else if strings.HasSuffix(part, ".service") || strings.HasSuffix(part, ".scope") {
				id.SystemdUnit = part
			}
		}
	}
	if inKube && id.PodUID != "" && id.QoSClass == "" {
		id.QoSClass = "guaranteed"
	}
	if id.ContainerID != "" {
		// A container's own scope is not a systemd unit an SRE would act on.
		if strings.HasSuffix(path.Base(p), ".scope") {
			id.SystemdUnit = ""
		}
	}
	return id
}

// containerScope recognises a systemd scope named after a container:
// cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope.
func containerScope(part string) (runtime, id string, ok bool) {
	name, isScope := strings.CutSuffix(part, ".scope")
	if !isScope {
		return "", "", false
	}
	for _, p := range []struct{ prefix, runtime string }{
		{"cri-containerd-", "containerd"},
		{"crio-conmon-", "cri-o"},
		{"crio-", "cri-o"},
		{"docker-", "docker"},
		{"containerd-", "containerd"},
	} {
		if rest, found := strings.CutPrefix(name, p.prefix); found && isHexID(rest) {
			return p.runtime, rest, true
		}
	}
	return "", "", false
}

// isHexID reports whether s looks like a full container ID (64 hex digits).
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isUID reports whether s looks like a Kubernetes UID (8-4-4-4-12 hex).
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// Switch is an Enricher that delegates to whichever Enricher was set last,
// so the Kubernetes metadata collector can provide enrichment to the
// collectors built before it. Its zero value leaves identities unchanged.
type Switch struct {
	e atomic.Pointer[Enricher]
}

// Set makes s delegate to e; nil restores the no-op.
func (s *Switch) Set(e Enricher) {
	if e == nil {
		s.e.Store(nil)
		return
	}
	s.e.Store(&e)
}

// Enrich implements Enricher.
func (s *Switch) Enrich(id *Identity) {
	if p := s.e.Load(); p != nil {
		(*p).Enrich(id)
	}
}
