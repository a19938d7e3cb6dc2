package healing

import (
	"fmt"
	"sort"

	"github.com/vigil-agent/vigil/rules"
)

// ProtocolDependencyAlerts are the default alerts on a caller's failing
// dependency by protocol (rules/defaults/workload.rules.yml), by alert
// name, with the dependency each is about. They sum over the servers
// (the Redis, PostgreSQL and DNS metrics' destination; gRPC's have none),
// so they carry no destination: they name the caller alone (namespace,
// pod, container and the owner labels the engine adds).
var ProtocolDependencyAlerts = map[string]string{
	"VigilWorkloadRedisErrors":    "Redis",
	"VigilWorkloadRedisSlow":      "Redis",
	"VigilWorkloadPostgresErrors": "PostgreSQL",
	"VigilWorkloadPostgresSlow":   "PostgreSQL",
	"VigilWorkloadDNSFailures":    "DNS resolver",
	"VigilWorkloadGRPCErrors":     "gRPC server",
}

// dependencyAlert reports whether a firing alert is about a workload's
// dependency: it carries the destination its caller fails to reach, or it
// is one of the ProtocolDependencyAlerts.
func dependencyAlert(a rules.Alert) bool {
	if a.Labels[LabelDestination] != "" {
		return true
	}
	_, ok := ProtocolDependencyAlerts[a.Labels["alertname"]]
	return ok
}

// DependenciesFor returns, of the firing dependency alerts, those whose
// caller is the target: a pod named by the alert's namespace and pod
// labels, or a workload (the target itself, or the owner w of a pod
// target) named by its namespace, owner_kind and owner_name labels. The
// alert being handled is left out when the target is its own dependency
// (acting on the dependency is what that alert asks for). The result is
// sorted by fingerprint so the guard's reason is stable.
func DependenciesFor(firing []rules.Alert, t Target, w *WorkloadFacts, handled rules.Alert) []rules.Alert {
	var ownerKind, ownerName string
	switch t.Kind {
	case "Pod":
		if w != nil {
			ownerKind, ownerName = w.Kind, w.Name
		}
	case "Deployment", "StatefulSet", "DaemonSet":
		ownerKind, ownerName = t.Kind, t.Name
	default:
		return nil
	}
	var out []rules.Alert
	for _, a := range firing {
		l := a.Labels
		if l["namespace"] != t.Namespace {
			continue
		}
		caller := (t.Kind == "Pod" && l["pod"] != "" && l["pod"] == t.Name) ||
			(ownerName != "" && l[LabelOwnerKind] == ownerKind && l[LabelOwnerName] == ownerName)
		if !caller {
			continue
		}
		if a.Fingerprint != "" && a.Fingerprint == handled.Fingerprint && isDependencyOf(l, t, w) {
			continue
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Fingerprint < out[j].Fingerprint })
	return out
}

// isDependencyOf reports whether the target (or its owner w) is the
// dependency an alert's labels name.
func isDependencyOf(l map[string]string, t Target, w *WorkloadFacts) bool {
	ns := l[LabelDependencyNamespace]
	if ns == "" || ns != t.Namespace {
		return false
	}
	switch {
	case t.Kind == "Pod" && (l[LabelDependencyPod] == t.Name):
		return true
	case l[LabelDependencyOwnerKind] == t.Kind && l[LabelDependencyOwnerName] == t.Name:
		return true
	case w != nil && l[LabelDependencyOwnerKind] == w.Kind && l[LabelDependencyOwnerName] == w.Name:
		return true
	}
	return false
}

// describeDependency names an alert's dependency for a veto reason.
func describeDependency(l map[string]string) string {
	dst := l[LabelDestination]
	if proto, ok := ProtocolDependencyAlerts[l["alertname"]]; ok && dst == "" {
		return proto + " (the alert names no server)"
	}
	kind, ns, name := l[LabelDependencyKind], l[LabelDependencyNamespace], l[LabelDependencyName]
	if kind == "" {
		return dst + " (not resolved to a Kubernetes object)"
	}
	s := fmt.Sprintf("%s %s/%s (%s)", kind, ns, name, dst)
	if ok, on := l[LabelDependencyOwnerKind], l[LabelDependencyOwnerName]; ok != "" && on != "" {
		s += fmt.Sprintf(", run by %s %s/%s", ok, ns, on)
	}
	return s
}

func guardDependency(in *GuardInput) string {
	if len(in.Facts.Dependencies) == 0 {
		return ""
	}
	switch in.Target.Kind {
	case "Pod", "Deployment", "StatefulSet", "DaemonSet":
	default:
		return ""
	}
	d := in.Facts.Dependencies[0]
	more := ""
	if n := len(in.Facts.Dependencies) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more failing dependencies)", n)
	}
	return fmt.Sprintf("%s is not acted on: its errors come from its dependency %s%s, alert %s is firing; act on the dependency instead",
		in.Target, describeDependency(d.Labels), more, d.Name())
}

// firingDependencies returns the firing dependency alerts, in no order.
func (e *Engine) firingDependencies() []rules.Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]rules.Alert, 0, len(e.deps))
	for _, a := range e.deps {
		out = append(out, a)
	}
	return out
}
