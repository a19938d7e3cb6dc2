package healing

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/rules"
)

// TestGuardDependency: with a firing dependency alert for a caller, an
// action on the caller (its pod, a sibling pod, its Deployment) is vetoed
// by the dependency guard with a reason naming the dependency, while the
// dependency itself and unrelated workloads may be acted on. With the
// guard removed from Guards the vetoes do not happen and the test fails.
func TestGuardDependency(t *testing.T) {
	dep := rules.Alert{State: rules.StateFiring, Fingerprint: "dep1", Labels: map[string]string{
		"alertname": "VigilWorkloadDependencyUnreachable", "namespace": "shop", "pod": "cart-1", "container": "cart",
		LabelOwnerKind: "Deployment", LabelOwnerName: "cart", LabelDestination: "10.96.0.10:80",
		LabelDependencyKind: "Service", LabelDependencyNamespace: "shop", LabelDependencyName: "payment",
		LabelDependencyOwnerKind: "Deployment", LabelDependencyOwnerName: "payment",
	}}
	// A caller whose destination did not resolve still protects it.
	unresolved := rules.Alert{State: rules.StateFiring, Fingerprint: "dep2", Labels: map[string]string{
		"alertname": "VigilWorkloadDependencyUnreachable", "namespace": "ops", "pod": "cron-1", LabelDestination: "[fd00::7]:443",
	}}
	crash := rules.Alert{State: rules.StateFiring, Fingerprint: "crash", Labels: map[string]string{"alertname": "VigilWorkloadCrashLooping"}}
	cartOwner := &WorkloadFacts{Kind: "Deployment", Namespace: "shop", Name: "cart", Replicas: 2, TargetReady: true}
	payOwner := &WorkloadFacts{Kind: "Deployment", Namespace: "shop", Name: "payment", Replicas: 1, TargetReady: true}
	del, _ := Lookup("delete_pod")
	restart, _ := Lookup("rollout_restart")
	cases := []struct {
		name    string
		handled rules.Alert
		target  Target
		owner   *WorkloadFacts
		action  Actuator
		veto    string // substring of the dependency veto; "" = allowed
	}{
		{"caller pod named by the alert", crash, Target{"Pod", "shop", "cart-1"}, cartOwner, del,
			"Pod shop/cart-1 is not acted on: its errors come from its dependency Service shop/payment (10.96.0.10:80), run by Deployment shop/payment, alert VigilWorkloadDependencyUnreachable is firing"},
		{"sibling pod of the caller's Deployment", crash, Target{"Pod", "shop", "cart-2"}, cartOwner, del, "dependency Service shop/payment (10.96.0.10:80)"},
		{"the caller's Deployment", dep, Target{"Deployment", "shop", "cart"}, cartOwner, restart, "dependency Service shop/payment"},
		{"unresolved destination", crash, Target{"Pod", "ops", "cron-1"}, nil, del, "dependency [fd00::7]:443 (not resolved to a Kubernetes object)"},
		{"the dependency alert acting on the dependency", dep, Target{"Deployment", "shop", "payment"}, payOwner, restart, ""},
		{"a pod of the dependency", crash, Target{"Pod", "shop", "payment-1"}, payOwner, del, ""},
		{"same name in another namespace", crash, Target{"Deployment", "prod", "cart"}, nil, restart, ""},
		{"not a workload", crash, Target{"Node", "", "node-1"}, nil, restart, ""},
	}
	firing := []rules.Alert{dep, unresolved}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := &GuardInput{
				Now: time.Now(), Alert: c.handled, Policy: &Policy{Name: "p"}, Step: &Step{Action: c.action}, Target: c.target,
				Facts: Facts{Workload: c.owner, Dependencies: DependenciesFor(firing, c.target, c.owner, c.handled)},
			}
			guard, reason := RunGuards(Guards, in)
			if c.veto == "" {
				if guard != "" {
					t.Fatalf("vetoed by %s: %s", guard, reason)
				}
				return
			}
			if guard != GuardDependency || !strings.Contains(reason, c.veto) {
				t.Fatalf("guard %q reason %q; want %s containing %q", guard, reason, GuardDependency, c.veto)
			}
		})
	}

	// A workload that is its own dependency (it calls its own Service):
	// the dependency alert may act on it; another alert may not.
	self := rules.Alert{State: rules.StateFiring, Fingerprint: "self", Labels: map[string]string{
		"namespace": "shop", "pod": "api-1", LabelOwnerKind: "Deployment", LabelOwnerName: "api", LabelDestination: "10.96.0.11:80",
		LabelDependencyKind: "Service", LabelDependencyNamespace: "shop", LabelDependencyName: "api",
		LabelDependencyOwnerKind: "Deployment", LabelDependencyOwnerName: "api",
	}}
	tgt := Target{"Deployment", "shop", "api"}
	if got := DependenciesFor([]rules.Alert{self}, tgt, nil, self); len(got) != 0 {
		t.Errorf("the self-dependency alert vetoes its own action: %v", got)
	}
	if got := DependenciesFor([]rules.Alert{self}, tgt, nil, crash); len(got) != 1 {
		t.Errorf("another alert on a workload whose dependency (itself) fails: %d matches, want 1", len(got))
	}
}

// The dependency guard comes before cooldown, and shadow and dry_run
// last, as documented.
func TestGuardOrder(t *testing.T) {
	var names []string
	for _, g := range Guards {
		names = append(names, g.Name)
	}
	want := "allow_list argument maintenance rollout blast_radius dependency cooldown rate_limit node_rate_limit circuit_breaker shadow dry_run"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("guards %q, want %q", got, want)
	}
}
