package healing

import (
	"fmt"
	"time"

	"github.com/vigil-agent/vigil/rules"
)

// Facts are what the engine read about a target before the guards run, so
// that every guard is a pure function of its input.
type Facts struct {
	// Maintenance is why actions are paused ("" when they are not): the
	// engine's pause switch, the maintenance file, or a
	// vigil.dev/maintenance annotation on the target, its owner or its node.
	Maintenance string
	// Node is the node a pod target runs on.
	Node string
	// Workload describes the pod target's owner or the workload target.
	Workload *WorkloadFacts
	// Dependencies are the firing dependency alerts (alerts with a
	// destination label, and the ProtocolDependencyAlerts) whose caller
	// is the target or its owner, as DependenciesFor selects them.
	Dependencies []rules.Alert
}

// WorkloadFacts describe a Deployment, StatefulSet or DaemonSet.
type WorkloadFacts struct {
	Kind, Namespace, Name string
	// Replicas is the desired number of pods.
	Replicas int
	// Unavailable counts desired pods that are not Ready now (unready,
	// rerouted, quarantined or missing).
	Unavailable int
	// TargetReady says whether the target pod is Ready now.
	TargetReady bool
	// RollingOut is set, with a reason, while the workload is mid-rollout.
	RollingOut string
}

// GuardInput is everything a guard may look at.
type GuardInput struct {
	Now      time.Time
	Alert    rules.Alert
	Policy   *Policy
	Step     *Step
	Target   Target
	Incident string
	// Args are the step's parameters rendered from the alert.
	Args    Args
	Facts   Facts
	History *History
	// GlobalDryRun is healing.dry_run.
	GlobalDryRun bool
	// NodeRateLimit is healing.node_rate_limit (nil: none).
	NodeRateLimit *RateLimit
}

// Guard can veto an action with a reason.
type Guard struct {
	Name  string
	Check func(in *GuardInput) (veto string)
}

// Guard names, used in records and vigil_remediation_vetoes_total.
const (
	// GuardAllowList: the target (a unit, a node) rendered from the
	// alert's labels is outside the policy's allow-list.
	GuardAllowList = "allow_list"
	// GuardArgument: a templated exec argument rendered to an option.
	GuardArgument       = "argument"
	GuardMaintenance    = "maintenance"
	GuardRollout        = "rollout"
	GuardBlastRadius    = "blast_radius"
	GuardDependency     = "dependency"
	GuardCooldown       = "cooldown"
	GuardRateLimit      = "rate_limit"
	GuardNodeRateLimit  = "node_rate_limit"
	GuardCircuitBreaker = "circuit_breaker"
	GuardDryRun         = "dry_run"
	GuardShadow         = "shadow"
)

// Guards is the ordered list every action passes. The policy's own
// bounds on what labels may choose (allow_list, argument) come first, so a
// hostile alert is vetoed for that reason even in maintenance or dry-run.
// Dry-run comes last so a dry-run record means "every other guard let it
// through".
var Guards = []Guard{
	{GuardAllowList, guardAllowList},
	{GuardArgument, guardArgument},
	{GuardMaintenance, guardMaintenance},
	{GuardRollout, guardRollout},
	{GuardBlastRadius, guardBlastRadius},
	{GuardDependency, guardDependency},
	{GuardCooldown, guardCooldown},
	{GuardRateLimit, guardRateLimit},
	{GuardNodeRateLimit, guardNodeRateLimit},
	{GuardCircuitBreaker, guardCircuitBreaker},
	{GuardShadow, guardShadow},
	{GuardDryRun, guardDryRun},
}

func guardMaintenance(in *GuardInput) string { return in.Facts.Maintenance }

func guardRollout(in *GuardInput) string {
	if w := in.Facts.Workload; w != nil && w.RollingOut != "" {
		return fmt.Sprintf("%s %s/%s is mid-rollout: %s", w.Kind, w.Namespace, w.Name, w.RollingOut)
	}
	return ""
}

// disruptive actuators take their pod target out of service; the blast
// radius applies to them.
type disruptive interface{ DisruptsPod() bool }

func guardBlastRadius(in *GuardInput) string {
	br, w := in.Policy.BlastRadius, in.Facts.Workload
	if br == nil || w == nil || in.Target.Kind != "Pod" {
		return ""
	}
	if d, ok := in.Step.Action.(disruptive); !ok || !d.DisruptsPod() {
		return ""
	}
	after := w.Unavailable
	if w.TargetReady {
		after++
	}
	limit := -1
	if br.MaxUnavailable > 0 {
		limit = br.MaxUnavailable
	}
	if br.MaxUnavailablePercent > 0 {
		p := w.Replicas * br.MaxUnavailablePercent / 100
		if limit < 0 || p < limit {
			limit = p
		}
	}
	if after > limit {
		return fmt.Sprintf("%s %s/%s would have %d of %d replicas unavailable (%d already), more than the %d allowed",
			w.Kind, w.Namespace, w.Name, after, w.Replicas, w.Unavailable, limit)
	}
	return ""
}

// notifier actuators tell people about the alert (a webhook): what they
// act on is the alert, not their receiver.
type notifier interface{ Notifies() bool }

func notifies(s *Step) bool {
	n, ok := s.Action.(notifier)
	return ok && n.Notifies()
}

// guardCooldown vetoes acting again on what was acted on within the
// policy's cooldown: the same target, or, for a notification, the same
// alert to the same receiver. Notifications about different alerts to one
// receiver (every policy's pages go to the same pager) never hold each
// other back.
func guardCooldown(in *GuardInput) string {
	cd := in.Policy.Cooldown
	if cd <= 0 || in.History == nil {
		return ""
	}
	notify := notifies(in.Step)
	var veto string
	in.History.Each(func(r *Record) bool {
		if in.Now.Sub(r.At) > cd {
			return false
		}
		if !(r.Result == ResultSuccess || r.Result == ResultShadow && r.takenFor(in.Policy)) || r.Target != in.Target || r.Incident == in.Incident {
			return true
		}
		switch {
		case !notify:
			veto = fmt.Sprintf("%s was acted on %s ago (%s by policy %s); cooldown is %s",
				in.Target, in.Now.Sub(r.At).Round(time.Second), r.Action, r.Policy, cd)
		case r.Fingerprint == in.Alert.Fingerprint:
			veto = fmt.Sprintf("%s was notified of this alert %s ago (%s by policy %s); cooldown is %s",
				in.Target, in.Now.Sub(r.At).Round(time.Second), r.Action, r.Policy, cd)
		default:
			return true
		}
		return false
	})
	return veto
}

func countTaken(h *History, now time.Time, per time.Duration, policy string, as *Policy) int {
	n := 0
	if h == nil {
		return 0
	}
	h.Each(func(r *Record) bool {
		if now.Sub(r.At) > per {
			return false
		}
		// Escalations (step -1) notify people; they are not remediation
		// actions and do not use up the limits.
		if r.takenFor(as) && r.Step >= 0 && (policy == "" || r.Policy == policy) {
			n++
		}
		return true
	})
	return n
}

func guardRateLimit(in *GuardInput) string {
	rl := in.Policy.RateLimit
	if rl == nil {
		return ""
	}
	if n := countTaken(in.History, in.Now, rl.Per, in.Policy.Name, in.Policy); n >= rl.Max {
		return fmt.Sprintf("policy %s took %d actions in the last %s; its limit is %d", in.Policy.Name, n, rl.Per, rl.Max)
	}
	return ""
}

func guardNodeRateLimit(in *GuardInput) string {
	rl := in.NodeRateLimit
	if rl == nil {
		return ""
	}
	if n := countTaken(in.History, in.Now, rl.Per, "", in.Policy); n >= rl.Max {
		return fmt.Sprintf("this node took %d actions in the last %s; its limit is %d", n, rl.Per, rl.Max)
	}
	return ""
}

// breakerOpen reports whether the policy's last cb.Failures remediations
// failed with none resolving since, the last within cb.ResetAfter.
func breakerOpen(in *GuardInput) (bool, int) {
	cb := in.Policy.CircuitBreaker
	if cb == nil || in.History == nil {
		return false, 0
	}
	failures := 0
	var last time.Time
	in.History.Each(func(r *Record) bool {
		if r.Policy != in.Policy.Name || r.Step < 0 {
			return true
		}
		switch r.Result {
		case ResultResolved:
			return false
		case ResultFailed, ResultUnresolved:
			if failures == 0 {
				last = r.At
			}
			failures++
		}
		return failures < cb.Failures
	})
	return failures >= cb.Failures && in.Now.Sub(last) < cb.ResetAfter, failures
}

func guardCircuitBreaker(in *GuardInput) string {
	if open, n := breakerOpen(in); open {
		return fmt.Sprintf("policy %s failed %d remediations in a row; circuit open for %s after the last, escalating instead",
			in.Policy.Name, n, in.Policy.CircuitBreaker.ResetAfter)
	}
	return ""
}

func guardShadow(in *GuardInput) string {
	if in.Policy.Shadow {
		return "policy " + in.Policy.Name + " is a shadow policy"
	}
	return ""
}

func guardDryRun(in *GuardInput) string {
	switch {
	case in.GlobalDryRun:
		return "healing.dry_run is on"
	case in.Policy.DryRun:
		return "policy " + in.Policy.Name + " is in dry-run"
	}
	return ""
}

// RunGuards returns the first guard that vetoes, or "" and "".
func RunGuards(guards []Guard, in *GuardInput) (guard, reason string) {
	for _, g := range guards {
		if r := g.Check(in); r != "" {
			return g.Name, r
		}
	}
	return "", ""
}
