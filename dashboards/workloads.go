package dashboards

// Workloads shows each pod or systemd unit on the chosen nodes: CPU,
// throttling, memory against its limit, OOM kills, process starts
// (restarts) and exits.
func Workloads() (Dashboard, error) {
	legend := "{{namespace}}/{{pod}}{{unit}}"
	return spec{
		uid:          "vigil-workloads",
		title:        "Vigil / Workloads",
		desc:         "Per pod or systemd unit: CPU, memory, OOM kills, restarts and exits (cgroup and eBPF collectors).",
		tags:         []string{"workloads"},
		workloadVars: true,
		sections: []section{
			{title: "CPU", panels: []panelB{
				timeSeries(panelOpts{title: "CPU usage", unit: "short", desc: "CPU seconds per second (cores) used by each workload's cgroup."},
					q(perWorkload("sum by ("+byWorkload+") (rate("+mCgroupCPU+"{%s}"+rateInterval+"))"), legend)),
				timeSeries(panelOpts{title: "CPU throttled", unit: "short", desc: "Seconds per second the workload was throttled by its CPU limit (CFS quota)."},
					q(perWorkload("sum by ("+byWorkload+") (rate("+mCgroupThrottled+"{%s}"+rateInterval+"))"), legend)),
			}},
			{title: "Memory", panels: []panelB{
				timeSeries(panelOpts{title: "Memory working set", unit: "bytes", desc: "Memory in use minus inactive file cache: what the kubelet evicts on."},
					q(perWorkload("sum by ("+byWorkload+") ("+mCgroupWorkingSet+"{%s})"), legend),
					q(perWorkload("sum by ("+byWorkload+") ("+mCgroupRSS+"{%s})"), legend+" rss")),
				timeSeries(panelOpts{title: "Memory working set / limit", unit: "percentunit", desc: "Working set as a share of the cgroup's memory limit (workloads with a limit only)."},
					q(perWorkload("sum by ("+byWorkload+") ("+mCgroupWorkingSet+"{%[1]s}) / sum by ("+byWorkload+") ("+mCgroupLimit+"{%[1]s})"), legend)),
			}},
			{title: "OOM kills, restarts and exits", panels: []panelB{
				timeSeries(panelOpts{title: "OOM kills", unit: "short", width: 8, desc: "Processes of the workload killed by the OOM killer (the cgroup's memory.events)."},
					q(perWorkload("sum by ("+byWorkload+") (increase("+mCgroupOOMKills+"{%s}"+rateInterval+"))"), legend)),
				timeSeries(panelOpts{title: "Process starts (restarts)", unit: "short", width: 8, desc: "Programs executed in the workload (eBPF exec events); a crash-looping workload shows repeated starts."},
					q(perWorkload("sum by ("+byWorkload+") (increase("+mProcessExecs+"{%s}"+rateInterval+"))"), legend)),
				timeSeries(panelOpts{title: "Process exits by outcome", unit: "short", width: 8, desc: "Exits: success (code 0), error (non-zero code), signal (killed)."},
					q(perWorkload("sum by ("+byWorkload+", outcome) (increase("+mProcessExits+"{%s}"+rateInterval+"))"), legend+" {{outcome}}")),
			}},
			{title: "Top workloads", panels: []panelB{
				tablePanel(panelOpts{title: "Top 10 by CPU", unit: "short", width: 12, desc: "Average cores over the dashboard's time range."},
					q("topk(10, "+perWorkload("sum by ("+byWorkload+") (rate("+mCgroupCPU+"{%s}[$__range]))")+")", "")),
				tablePanel(panelOpts{title: "Top 10 by memory", unit: "bytes", width: 12, desc: "Current working set."},
					q("topk(10, "+perWorkload("sum by ("+byWorkload+") ("+mCgroupWorkingSet+"{%s})")+")", "")),
			}},
		},
	}.build()
}
