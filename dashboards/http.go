package dashboards

// HTTP shows the RED method (rate, errors, duration) for HTTP/1.x traffic
// the eBPF collector sees, on the server and the client side.
func HTTP() (Dashboard, error) {
	legend := "{{namespace}}/{{pod}}{{unit}}"
	rate := func(extra, by string) string {
		return perWorkload("sum by (" + byWorkload + by + ") (rate(" + mHTTPRequests + "{%s" + extra + "}" + rateInterval + "))")
	}
	byDest := func(metric, extra string) string {
		return perWorkload("sum by (" + byWorkload + ", destination) (rate(" + metric + "{%s" + extra + "}" + rateInterval + "))")
	}
	quantile := func(phi, kind string) string {
		return "histogram_quantile(" + phi + ", " + perWorkload("sum by ("+byWorkload+", le) (rate("+mHTTPDuration+`_bucket{%s, kind="`+kind+`"}`+rateInterval+"))") + ")"
	}
	return spec{
		uid:          "vigil-http",
		title:        "Vigil / HTTP (eBPF)",
		desc:         "Requests, errors and duration (RED) of HTTP/1.x servers and clients per workload and route, from the eBPF collector.",
		tags:         []string{"http", "ebpf"},
		workloadVars: true,
		sections: []section{
			{title: "Servers", panels: []panelB{
				timeSeries(panelOpts{title: "Request rate", unit: "reqps", width: 8, desc: "Requests served per second (R)."},
					q(rate(`, kind="server"`, ""), legend)),
				timeSeries(panelOpts{title: "Error ratio (5xx)", unit: "percentunit", width: 8, desc: "Share of requests answered with a 5xx status (E)."},
					q("("+rate(`, kind="server", status_class="5xx"`, "")+")\n/\n("+rate(`, kind="server"`, "")+")", legend)),
				timeSeries(panelOpts{title: "Duration", unit: "s", width: 8, desc: "Time from request to response start, p50 and p99 (D)."},
					q(quantile("0.5", "server"), legend+" p50"),
					q(quantile("0.99", "server"), legend+" p99")),
				timeSeries(panelOpts{title: "Requests by status class", unit: "reqps", width: 12, stacked: true, desc: "Requests served per second by status class (1xx … 5xx)."},
					q(rate(`, kind="server"`, ", status_class"), legend+" {{status_class}}")),
				tablePanel(panelOpts{title: "Routes", unit: "reqps", width: 12, desc: "Requests per second by route, method and status class over the dashboard's time range."},
					q("sort_desc("+perWorkload("sum by ("+byWorkload+", route, method, status_class) (rate("+mHTTPRequests+`{%s, kind="server"}[$__range]))`)+")", "")),
			}},
			{title: "Clients", panels: []panelB{
				timeSeries(panelOpts{title: "Outgoing request rate", unit: "reqps", width: 8, desc: "Requests sent per second by each workload, by status class."},
					q(rate(`, kind="client"`, ", status_class"), legend+" {{status_class}}")),
				timeSeries(panelOpts{title: "Outgoing error ratio (5xx)", unit: "percentunit", width: 8, desc: "Share of requests sent that got a 5xx answer."},
					q("("+rate(`, kind="client", status_class="5xx"`, "")+")\n/\n("+rate(`, kind="client"`, "")+")", legend)),
				timeSeries(panelOpts{title: "Outgoing duration (p99)", unit: "s", width: 8, desc: "Time from request sent to response start, p99."},
					q(quantile("0.99", "client"), legend+" p99")),
				// The dependency alerts' view (VigilWorkloadDependency*):
				// which server the caller's errors and waits come from.
				timeSeries(panelOpts{title: "Outgoing error ratio (5xx) by server", unit: "percentunit", width: 12, desc: "Share of requests sent to each server (destination: its ip:port; overflow past the agent's max_series) answered with a 5xx, as the dependency alerts see it."},
					q("("+byDest(mHTTPByDest, `, status_class="5xx"`)+")\n/\n("+byDest(mHTTPByDest, "")+")", legend+" → {{destination}}")),
				timeSeries(panelOpts{title: "Outgoing mean duration by server", unit: "s", width: 12, desc: "Mean time from request sent to response start, per server the workload sent to: the summed request time over the request count."},
					q("("+byDest(mHTTPByDestSeconds, "")+")\n/\n("+byDest(mHTTPByDest, "")+")", legend+" → {{destination}}")),
			}},
		},
	}.build()
}
