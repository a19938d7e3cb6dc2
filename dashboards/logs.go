package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// LogsQuery is the LogQL of the logs panel: the streams the logs
// collector ships carry node (the agent's node name), and for pod logs
// namespace and pod; cluster comes from loki.labels. node=~"$node"
// never matches the empty value, as Loki requires of one matcher.
const LogsQuery = `{cluster=~"$cluster", node=~"$node", namespace=~"$namespace", pod=~"$workload"}`

// Logs shows log volume by level and workload, configured pattern
// matches, the pipeline's throughput, and the lines themselves from Loki.
func Logs() (Dashboard, error) {
	legend := "{{namespace}}/{{pod}}{{unit}}"
	return spec{
		uid:          "vigil-logs",
		title:        "Vigil / Logs",
		desc:         "Log volume by level and workload, pattern matches (logs collector) and the log lines (Loki).",
		tags:         []string{"logs"},
		workloadVars: true,
		extraVars:    []cog.Builder[dashboard.VariableModel]{datasourceVar(VarLoki, "Loki", "loki")},
		sections: []section{
			{title: "Volume", panels: []panelB{
				timeSeries(panelOpts{title: "Log lines by level", unit: "short", width: 8, stacked: true, desc: "Log records per second by level (unknown when none could be read)."},
					q("sum by (level) ("+perWorkload("sum by ("+byWorkload+", level) (rate("+mLogLines+"{%s}"+rateInterval+"))")+")", "{{level}}")),
				timeSeries(panelOpts{title: "Log lines by workload", unit: "short", width: 8, desc: "Log records per second per workload."},
					q(perWorkload("sum by ("+byWorkload+") (rate("+mLogLines+"{%s}"+rateInterval+"))"), legend)),
				timeSeries(panelOpts{title: "Error and fatal lines", unit: "short", width: 8, desc: "Records per second at level error or fatal, per workload."},
					q(perWorkload("sum by ("+byWorkload+") (rate("+mLogLines+`{%s, level=~"error|fatal"}`+rateInterval+"))"), legend)),
			}},
			{title: "Pattern matches", panels: []panelB{
				timeSeries(panelOpts{title: "Pattern matches", unit: "short", desc: "Records per second matching each configured pattern (collectors.logs.patterns), per workload."},
					q(perWorkload("sum by ("+byWorkload+", pattern) (rate("+mLogMatches+"{%s}"+rateInterval+"))"), legend+" {{pattern}}")),
				tablePanel(panelOpts{title: "Pattern matches in range", unit: "short", desc: "Matches over the dashboard's time range, by pattern and workload."},
					q("sort_desc("+perWorkload("sum by (pattern, "+byWorkload+") (increase("+mLogMatches+"{%s}[$__range]))")+")", "")),
			}},
			{title: "Pipeline", panels: []panelB{
				timeSeries(panelOpts{title: "Lines read and shipped", unit: "short", desc: "Lines read from files and lines Loki accepted, per second, per node."},
					q("rate("+sel(mLogsLinesRead, nodeSel)+rateInterval+")", "{{instance}} read"),
					q("rate("+sel(mLogsSentLines, nodeSel)+rateInterval+")", "{{instance}} shipped")),
				timeSeries(panelOpts{title: "Disk buffer", unit: "bytes", desc: "Bytes waiting in the disk buffer for Loki."},
					q(sel(mLogsBufferSize, nodeSel), "{{instance}}")),
			}},
			{title: "Lines", panels: []panelB{
				logsPanel(panelOpts{title: "Logs", width: 24, height: 14, desc: "Log lines from Loki for the chosen nodes, namespaces and pods."}, LogsQuery),
			}},
		},
	}.build()
}
