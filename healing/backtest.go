package healing

import (
	"fmt"
	"sort"
	"time"

	"github.com/vigil-agent/vigil/rules"
)

// Decision is what a policy would have done about one alert in a
// backtest: act on a target, or be stopped by a guard.
type Decision struct {
	At          time.Time         `json:"time"`
	Alert       string            `json:"alert"`
	AlertLabels map[string]string `json:"alert_labels"`
	Policy      string            `json:"policy"`
	Step        int               `json:"step"`
	Action      string            `json:"action"`
	Target      Target            `json:"target"`
	// Result is would_act, shadow, vetoed or failed (the parameters could
	// not be rendered from the alert's labels).
	Result string `json:"result"`
	Guard  string `json:"guard,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// The results of a backtest decision besides vetoed and shadow.
const (
	BacktestWouldAct = "would_act"
	BacktestFailed   = "failed"
)

// NotBacktested are the guards a backtest cannot evaluate: they read the
// cluster's state at the moment of the action (maintenance switches, a
// rollout in progress, the workload's unavailable replicas), which stored
// telemetry does not hold. Dry-run is left out on purpose: a backtest says
// what the policies would do live.
var NotBacktested = []string{GuardMaintenance, GuardRollout, GuardBlastRadius, GuardDryRun}

// Backtest replays firing alerts (StartsAt is when each started firing,
// EndsAt when it resolved or zero) through the policy tree in time order,
// as the engine would on a live agent, and returns each policy's decision
// on each alert's first step: the action and its target, or the guard that
// stops it. The guards run as pure functions over the simulated history
// (each would-be action is recorded as taken, so cooldowns and rate limits
// apply), the dependency guard over the dependency alerts firing at the
// time; the guards in NotBacktested are skipped. Verification is not
// simulated: each alert gets its policies' first step only, and the
// circuit breaker, which counts failed remediations, never opens.
func Backtest(tree *Tree, alerts []rules.Alert, nodeRateLimit *RateLimit) []Decision {
	alerts = append([]rules.Alert(nil), alerts...)
	sort.SliceStable(alerts, func(i, j int) bool { return alerts[i].StartsAt.Before(alerts[j].StartsAt) })
	skip := map[string]bool{}
	for _, g := range NotBacktested {
		skip[g] = true
	}
	var guards []Guard
	for _, g := range Guards {
		if !skip[g.Name] {
			guards = append(guards, g)
		}
	}
	hist := NewHistory(100000)
	var out []Decision
	for i, a := range alerts {
		if a.Fingerprint == "" {
			a.Fingerprint = rules.Fingerprint(a.Labels)
		}
		var firingDeps []rules.Alert
		for _, d := range alerts[:i] {
			if dependencyAlert(d) && (d.EndsAt.IsZero() || d.EndsAt.After(a.StartsAt)) {
				firingDeps = append(firingDeps, d)
			}
		}
		for _, p := range tree.Match(a.Labels) {
			if len(p.Steps) == 0 {
				continue
			}
			s := p.Steps[0]
			d := Decision{At: a.StartsAt, Alert: a.Name(), AlertLabels: a.Labels, Policy: p.Name, Step: s.Index, Action: s.Action.Name()}
			incident := fmt.Sprintf("backtest-%d-%s", i, p.Name)
			args, err := s.Render(a.Labels)
			if err != nil {
				d.Result, d.Reason = BacktestFailed, "cannot render parameters: "+err.Error()
				out = append(out, d)
				continue
			}
			t := s.Action.Target(args)
			d.Target = t
			in := &GuardInput{Now: a.StartsAt, Alert: a, Policy: p, Step: s, Target: t, Incident: incident, Args: args,
				History: hist, NodeRateLimit: nodeRateLimit}
			in.Facts.Dependencies = DependenciesFor(firingDeps, t, nil, a)
			rec := Record{At: a.StartsAt, Incident: incident, Policy: p.Name, Step: s.Index, Action: s.Action.Name(),
				Target: t, Alert: a.Name(), AlertLabels: a.Labels, Fingerprint: a.Fingerprint}
			switch guard, reason := RunGuards(guards, in); guard {
			case "":
				d.Result, d.Reason = BacktestWouldAct, "would "+describe(s, t)
				rec.Result = ResultSuccess
			case GuardShadow:
				d.Result, d.Guard, d.Reason = string(ResultShadow), guard, "would "+describe(s, t)+"; "+reason
				rec.Result, rec.Shadow = ResultShadow, true
			default:
				d.Result, d.Guard, d.Reason = string(ResultVetoed), guard, reason
				rec.Result, rec.Guard = ResultVetoed, guard
			}
			hist.Add(rec)
			out = append(out, d)
		}
	}
	return out
}
