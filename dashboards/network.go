package dashboards

// Network shows TCP as the eBPF collector sees it: connections, failures,
// connect latency, retransmits, resets and the top destinations.
func Network() (Dashboard, error) {
	legend := "{{namespace}}/{{pod}}{{unit}}"
	return spec{
		uid:          "vigil-network",
		title:        "Vigil / Network (eBPF)",
		desc:         "TCP connections, failures, latency, retransmits and top destinations per workload, from the eBPF collector.",
		tags:         []string{"network", "ebpf"},
		workloadVars: true,
		sections: []section{
			{title: "Connections", panels: []panelB{
				timeSeries(panelOpts{title: "Outbound connection attempts", unit: "reqps", width: 8, desc: "Outbound connects that finished (established or failed), per second."},
					q(perWorkload("sum by ("+byWorkload+") (rate("+mTCPAttempts+"{%s}"+rateInterval+"))"), legend)),
				timeSeries(panelOpts{title: "Inbound connections accepted", unit: "reqps", width: 8, desc: "Inbound connections established, per second."},
					q(perWorkload("sum by ("+byWorkload+") (rate("+mTCPAccepts+"{%s}"+rateInterval+"))"), legend)),
				timeSeries(panelOpts{title: "Open connections", unit: "short", width: 8, desc: "Connections established since the agent started and still open, by direction."},
					q(perWorkload("sum by ("+byWorkload+", direction) ("+mTCPActive+"{%s})"), legend+" {{direction}}")),
			}},
			{title: "Failures and latency", panels: []panelB{
				timeSeries(panelOpts{title: "Connect failures by reason", unit: "reqps", width: 8, desc: "Failed outbound connects per second: refused, timeout, unreachable, aborted, error."},
					q(perWorkload("sum by ("+byWorkload+", reason) (rate("+mTCPFailures+"{%s}"+rateInterval+"))"), legend+" {{reason}}")),
				timeSeries(panelOpts{title: "Connect latency", unit: "s", width: 8, desc: "SYN sent to established, for successful outbound connects (p50, p99)."},
					q("histogram_quantile(0.5, "+perWorkload("sum by ("+byWorkload+", le) (rate("+mTCPConnectSeconds+"_bucket{%s}"+rateInterval+"))")+")", legend+" p50"),
					q("histogram_quantile(0.99, "+perWorkload("sum by ("+byWorkload+", le) (rate("+mTCPConnectSeconds+"_bucket{%s}"+rateInterval+"))")+")", legend+" p99")),
				timeSeries(panelOpts{title: "Connection lifetime (p50)", unit: "s", width: 8, desc: "Time from established to closed, for closed connections, by direction."},
					q("histogram_quantile(0.5, "+perWorkload("sum by ("+byWorkload+", direction, le) (rate("+mTCPLifetime+"_bucket{%s}"+rateInterval+"))")+")", legend+" {{direction}}")),
			}},
			{title: "Retransmits and resets", panels: []panelB{
				timeSeries(panelOpts{title: "Retransmitted segments", unit: "pps", desc: "TCP segments (including SYNs) retransmitted per second, by direction."},
					q(perWorkload("sum by ("+byWorkload+", direction) (rate("+mTCPRetransmits+"{%s}"+rateInterval+"))"), legend+" {{direction}}")),
				timeSeries(panelOpts{title: "Resets", unit: "pps", desc: "Resets sent or received per second."},
					q(perWorkload("sum by ("+byWorkload+", side) (rate("+mTCPResets+"{%s}"+rateInterval+"))"), legend+" {{side}}")),
			}},
			{title: "Top destinations", panels: []panelB{
				tablePanel(panelOpts{title: "Top 10 destinations by connections", unit: "short", desc: "Outbound connects over the dashboard's time range, by destination."},
					q("topk(10, "+perWorkload("sum by (destination) (increase("+mTCPAttempts+"{%s}[$__range]))")+")", "")),
				tablePanel(panelOpts{title: "Top 10 destinations by failures", unit: "short", desc: "Failed outbound connects over the dashboard's time range, by destination and reason."},
					q("topk(10, "+perWorkload("sum by (destination, reason) (increase("+mTCPFailures+"{%s}[$__range]))")+")", "")),
			}},
		},
	}.build()
}
