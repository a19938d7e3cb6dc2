package healing

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/rules"
	"github.com/vigil-agent/vigil/rules/defaults"
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

// TestGuardProtocolDependency: the protocol dependency alerts (Redis,
// PostgreSQL, DNS) carry no destination, only the caller's identity. While
// one fires for a caller, an action on that caller (its pod, a sibling pod
// of its owner, its owner) is vetoed with a reason naming the alert; other
// workloads in the namespace, a same-named pod elsewhere and, for an alert
// whose owner is not known, the caller's siblings are still acted on.
func TestGuardProtocolDependency(t *testing.T) {
	pg := rules.Alert{State: rules.StateFiring, Fingerprint: "pg", Labels: map[string]string{
		"alertname": "VigilWorkloadPostgresErrors", "severity": "warning", "namespace": "shop", "pod": "cart-1", "container": "cart",
		LabelOwnerKind: "Deployment", LabelOwnerName: "cart",
	}}
	// Not enriched (no Kubernetes, or the owner lookup failed): the pod
	// alone is held.
	dns := rules.Alert{State: rules.StateFiring, Fingerprint: "dns", Labels: map[string]string{
		"alertname": "VigilWorkloadDNSFailures", "namespace": "shop", "pod": "search-1", "container": "search",
	}}
	// A systemd unit's alert names no pod: it holds no pod.
	unit := rules.Alert{State: rules.StateFiring, Fingerprint: "unit", Labels: map[string]string{
		"alertname": "VigilWorkloadRedisSlow", "unit": "app.service",
	}}
	fivexx := func(ns, pod, ownerKind, ownerName string) rules.Alert {
		return rules.Alert{State: rules.StateFiring, Fingerprint: "5xx-" + pod, Labels: map[string]string{
			"alertname": "VigilWorkloadHigh5xxRatio", "namespace": ns, "pod": pod, "container": "app",
			LabelOwnerKind: ownerKind, LabelOwnerName: ownerName,
		}}
	}
	owner := func(name string) *WorkloadFacts {
		return &WorkloadFacts{Kind: "Deployment", Namespace: "shop", Name: name, Replicas: 3, TargetReady: true}
	}
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
		{"caller pod", fivexx("shop", "cart-1", "Deployment", "cart"), Target{"Pod", "shop", "cart-1"}, owner("cart"), del,
			"Pod shop/cart-1 is not acted on: its errors come from its dependency PostgreSQL (the alert names no server), alert VigilWorkloadPostgresErrors is firing; act on the dependency instead"},
		{"sibling pod of the caller's owner", fivexx("shop", "cart-2", "Deployment", "cart"), Target{"Pod", "shop", "cart-2"}, owner("cart"), del,
			"alert VigilWorkloadPostgresErrors is firing"},
		{"the caller's Deployment", fivexx("shop", "cart-1", "Deployment", "cart"), Target{"Deployment", "shop", "cart"}, nil, restart,
			"alert VigilWorkloadPostgresErrors is firing"},
		{"the protocol alert itself acting on its caller", pg, Target{"Deployment", "shop", "cart"}, nil, restart,
			"alert VigilWorkloadPostgresErrors is firing"},
		{"unenriched caller pod", fivexx("shop", "search-1", "Deployment", "search"), Target{"Pod", "shop", "search-1"}, owner("search"), del,
			"dependency DNS resolver (the alert names no server), alert VigilWorkloadDNSFailures is firing"},
		{"another workload in the namespace", fivexx("shop", "payment-1", "Deployment", "payment"), Target{"Pod", "shop", "payment-1"}, owner("payment"), del, ""},
		{"another workload's Deployment", fivexx("shop", "payment-1", "Deployment", "payment"), Target{"Deployment", "shop", "payment"}, nil, restart, ""},
		{"sibling of an unenriched caller", fivexx("shop", "search-2", "Deployment", "search"), Target{"Pod", "shop", "search-2"}, owner("search"), del, ""},
		{"same pod name in another namespace", fivexx("prod", "cart-1", "Deployment", "cart"), Target{"Pod", "prod", "cart-1"}, nil, del, ""},
		{"same owner name in another namespace", fivexx("prod", "cart-1", "Deployment", "cart"), Target{"Deployment", "prod", "cart"}, nil, restart, ""},
		{"a pod with no name", fivexx("shop", "", "", ""), Target{"Pod", "", ""}, nil, del, ""},
	}
	firing := []rules.Alert{pg, dns, unit}
	for _, a := range firing {
		if !dependencyAlert(a) {
			t.Errorf("%s is not taken as a dependency alert: the engine does not keep it for the guard", a.Name())
		}
	}
	if dependencyAlert(fivexx("shop", "cart-1", "Deployment", "cart")) {
		t.Errorf("VigilWorkloadHigh5xxRatio is taken as a dependency alert")
	}
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
}

// Every alert the guard takes by name is a default alert: a rename in
// rules/defaults would otherwise silently leave its callers unprotected.
func TestProtocolDependencyAlertsAreDefaultAlerts(t *testing.T) {
	b, err := defaults.FS.ReadFile("workload.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name := range ProtocolDependencyAlerts {
		if !strings.Contains(string(b), "- alert: "+name+"\n") {
			t.Errorf("%s is not an alert of rules/defaults/workload.rules.yml", name)
		}
	}
}
