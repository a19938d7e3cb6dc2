package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// remediationEvents is the annotation query of the healing timeline: one
// annotation per step in which a policy recorded a decision. A counter
// series appears with its first decision, which increase() cannot see, so
// series that are new within the step count too.
var remediationEvents = "sum by (instance, policy, action, result) (\n  (increase(" + sel(mRemediations, nodeSel) + "[1m]) > 0)\n  or\n  (" +
	sel(mRemediations, nodeSel) + " unless " + sel(mRemediations, nodeSel) + " offset 1m)\n)"

// Healing shows what the healing engine did: actions by policy and result,
// vetoes by guard, a timeline of decisions as annotations, and the time
// from an alert to the action taken for it.
func Healing() (Dashboard, error) {
	return spec{
		uid:   "vigil-healing",
		title: "Vigil / Healing",
		desc:  "Remediation decisions by policy and result, guard vetoes, the time from alert to action, and a timeline of decisions as annotations.",
		tags:  []string{"healing"},
		annotations: []cog.Builder[dashboard.AnnotationQuery]{
			dashboard.NewAnnotationQueryBuilder().
				Name("Remediations").
				Datasource(promDS).
				Enable(true).
				IconColor("orange").
				Target(prometheus.NewDataqueryBuilder().Datasource(promDS).RefId("Anno").Expr(remediationEvents).Range()).
				Expr(remediationEvents).
				Step("1m").
				TitleFormat("{{policy}}: {{action}} {{result}}").
				TextFormat("node {{instance}}").
				TagKeys("policy,action,result"),
		},
		sections: []section{
			{title: "Decisions", panels: []panelB{
				statPanel(panelOpts{title: "Alerts received", unit: "short", desc: "Alerts the healing engine received over the time range."},
					q("sum(increase("+sel(mHealingAlerts, nodeSel)+"[$__range]))", "")),
				statPanel(panelOpts{title: "Actions taken", unit: "short", desc: "Successful actions over the time range."},
					q("sum(increase("+sel(mRemediations, nodeSel, `result="success"`)+"[$__range]))", "")),
				statPanel(panelOpts{title: "Dry-run decisions", unit: "short", desc: "Actions that would have run, over the time range."},
					q("sum(increase("+sel(mRemediations, nodeSel, `result="dry_run"`)+"[$__range]))", "")),
				statPanel(panelOpts{title: "Vetoes", unit: "short", desc: "Actions a guard stopped, over the time range."},
					q("sum(increase("+sel(mRemediationVetoes, nodeSel)+"[$__range]))", "")),
				timeSeries(panelOpts{title: "Decisions by policy and result", unit: "short", stacked: true, desc: "Remediation decisions per interval: success, failed, vetoed, dry_run, pending_approval, resolved, unresolved, skipped."},
					q("sum by (policy, action, result) (increase("+sel(mRemediations, nodeSel)+rateInterval+"))", "{{policy}} {{action}} {{result}}")),
				timeSeries(panelOpts{title: "Vetoes by guard", unit: "short", stacked: true, desc: "Actions stopped per interval, by guard (cooldown, rate_limit, blast_radius, circuit_breaker, …) and policy."},
					q("sum by (policy, guard) (increase("+sel(mRemediationVetoes, nodeSel)+rateInterval+"))", "{{guard}} ({{policy}})")),
			}},
			{title: "Timing", panels: []panelB{
				timeSeries(panelOpts{title: "Time from alert to action", unit: "s", desc: "From the alert's start to the decision taken for it, p50 and p99, by policy."},
					q("histogram_quantile(0.5, sum by (policy, le) (rate("+sel(mRemediationDelay+"_bucket", nodeSel)+rateInterval+")))", "{{policy}} p50"),
					q("histogram_quantile(0.99, sum by (policy, le) (rate("+sel(mRemediationDelay+"_bucket", nodeSel)+rateInterval+")))", "{{policy}} p99")),
				timeSeries(panelOpts{title: "Action duration", unit: "s", desc: "Time an actuator took to act (its API calls), p99, by policy and action."},
					q("histogram_quantile(0.99, sum by (policy, action, le) (rate("+sel(mRemediationDuration+"_bucket", nodeSel)+rateInterval+")))", "{{policy}} {{action}}")),
				tablePanel(panelOpts{title: "Decisions in range", unit: "short", width: 24, desc: "Decisions per policy, action and result over the time range (a series's first decision is not counted by increase(); the timeline shows it)."},
					q("sort_desc(sum by (policy, action, result) (increase("+sel(mRemediations, nodeSel)+"[$__range])))", "")),
			}},
		},
	}.build()
}
