package dashboards

// Protocols shows the RED method (rate, errors, duration) for the Redis,
// PostgreSQL, DNS and gRPC traffic the eBPF collector decodes, per workload, on
// the client and the server side, with the failure ratio the default
// dependency alerts fire on.
func Protocols() (Dashboard, error) {
	return spec{
		uid:          "vigil-protocols",
		title:        "Vigil / Redis, PostgreSQL, DNS and gRPC (eBPF)",
		desc:         "Requests, errors and duration (RED) of Redis, PostgreSQL, DNS and gRPC clients and servers per workload, from the eBPF collector.",
		tags:         []string{"redis", "postgres", "dns", "grpc", "ebpf"},
		workloadVars: true,
		sections: []section{
			protocolSection(protocol{
				name: "Redis", byServer: true, requests: mRedisRequests, duration: mRedisDuration, what: "commands", detail: "command",
				errLabel: "error", errNone: `error!="none"`, errCodes: "error codes (ERR, WRONGTYPE, OOM, …)",
				failed: `error=~"` + redisServerErrors + `"`, alert: "VigilWorkloadRedisErrors",
				failedDesc: "server-side errors (" + redisServerErrors + ")",
			}),
			protocolSection(protocol{
				name: "PostgreSQL", byServer: true, requests: mPostgresRequests, duration: mPostgresDuration, what: "queries", detail: "command",
				errLabel: "error", errNone: `error!="none"`, errCodes: "SQLSTATE classes (42, 23, 57, …)",
				failed: `error=~"` + postgresServerErrors + `"`, alert: "VigilWorkloadPostgresErrors",
				failedDesc: "server-side SQLSTATE classes (" + postgresServerErrors + ")",
			}),
			protocolSection(protocol{
				name: "DNS", byServer: true, requests: mDNSRequests, duration: mDNSDuration, what: "queries", detail: "qtype",
				errLabel: "rcode", errNone: `rcode!="NOERROR"`,
				errDesc: "DNS queries per second answered with another code than NOERROR, or not answered (timeout), by side and response code. NXDOMAIN is an answer (the name does not exist; a resolver's search list makes many): the failure ratio leaves it out.",
				failed:  `rcode=~"` + dnsFailures + `"`, total: `rcode!="NXDOMAIN"`, alert: "VigilWorkloadDNSFailures",
				failedDesc: "SERVFAIL, REFUSED or no answer (timeout), of those not answered NXDOMAIN",
			}),
			protocolSection(protocol{
				name: "gRPC", requests: mGRPCRequests, duration: mGRPCDuration, what: "calls", detail: "service, method",
				errLabel: "code", errNone: `code!="OK"`, errCodes: "status code (UNAVAILABLE, NOT_FOUND, …)",
				failed: `code=~"` + grpcServerErrors + `"`, alert: "VigilWorkloadGRPCErrors",
				failedDesc: "server-side codes (" + grpcServerErrors + ")",
				durDesc:    "Time from the call's request headers to the end of its response (trailers), p50 and p99, by side.",
			}),
		},
	}.build()
}

// protocol describes one request/response protocol's metrics for
// protocolSection.
type protocol struct {
	name               string // row title
	requests, duration string // counter and histogram names
	what               string // "commands", "queries"
	detail             string // the label naming the request (command, qtype)
	errLabel, errNone  string // the error label and the selector of errors
	errCodes           string // what errLabel holds, for the descriptions
	errDesc            string // the errors panel's description, when not the usual one
	durDesc            string // the duration panel's description, when not the usual one
	// failed selects the errors a default alert counts, over all the
	// requests its ratio divides by (all of them unless total says).
	failed, total     string
	alert, failedDesc string
	// byServer: the series carry destination (the server's ip:port), so
	// the section breaks the clients' failures and latency down by server.
	byServer bool
}

// protocolSection is a row of panels for one protocol: requests by side,
// the failure ratio a default alert sees on the client side, duration p50
// and p99 by side, errors by code, and a table of requests by name, side
// and error over the dashboard's range.
func protocolSection(p protocol) section {
	legend := "{{namespace}}/{{pod}}{{unit}}"
	rate := func(extra, by string) string {
		return perWorkload("sum by (" + byWorkload + by + ") (rate(" + p.requests + "{%s" + extra + "}" + rateInterval + "))")
	}
	quantile := func(phi string) string {
		return "histogram_quantile(" + phi + ", " + perWorkload("sum by ("+byWorkload+", kind, le) (rate("+p.duration+"_bucket{%s}"+rateInterval+"))") + ")"
	}
	errDesc := p.errDesc
	if errDesc == "" {
		errDesc = p.name + " " + p.what + " answered with an error per second, by side and " + p.errCodes + "."
	}
	durDesc := p.durDesc
	if durDesc == "" {
		durDesc = "Time from the request to the first byte of its reply, p50 and p99, by side."
	}
	total := `, kind="client"`
	if p.total != "" {
		total += ", " + p.total
	}
	panels := []panelB{
		timeSeries(panelOpts{title: p.name + " " + p.what, unit: "reqps", width: 8,
			desc: p.name + " " + p.what + " per second, by side: sent (client) or served (server)."},
			q(rate("", ", kind"), legend+" {{kind}}")),
		timeSeries(panelOpts{title: p.name + " failure ratio (clients)", unit: "percentunit", width: 8,
			desc: "Share of the " + p.what + " each workload sent that failed with " + p.failedDesc + ": what " + p.alert + " fires on (over 20 %, with at least 0.05 failures a second)."},
			q("("+rate(`, kind="client", `+p.failed, "")+")\n/\n("+rate(total, "")+")", legend)),
		timeSeries(panelOpts{title: p.name + " duration", unit: "s", width: 8,
			desc: durDesc},
			q(quantile("0.5"), legend+" {{kind}} p50"),
			q(quantile("0.99"), legend+" {{kind}} p99")),
		timeSeries(panelOpts{title: p.name + " errors by code", unit: "reqps", width: 12,
			desc: errDesc},
			q(rate(", "+p.errNone, ", kind, "+p.errLabel), legend+" {{kind}} {{"+p.errLabel+"}}")),
		tablePanel(panelOpts{title: p.name + " " + p.what + " by " + p.detail, unit: "short", width: 12,
			desc: p.name + " " + p.what + " over the dashboard's time range, by " + p.detail + ", side and " + p.errLabel + "."},
			q("sort_desc("+perWorkload("sum by ("+byWorkload+", "+p.detail+", kind, "+p.errLabel+") (increase("+p.requests+"{%s}[$__range]))")+")", "")),
	}
	if p.byServer {
		// Which of a workload's servers fails or is slow: the same ratio
		// and p99 as above, per destination (the server's ip:port).
		panels = append(panels,
			timeSeries(panelOpts{title: p.name + " failure ratio by server (clients)", unit: "percentunit", width: 12,
				desc: "The failure ratio above, per server the workload sent to (destination: its ip:port; overflow when the agent's max_series was reached): which server the failures come from."},
				q("("+rate(`, kind="client", `+p.failed, ", destination")+")\n/\n("+rate(total, ", destination")+")", legend+" → {{destination}}")),
			timeSeries(panelOpts{title: p.name + " duration p99 by server (clients)", unit: "s", width: 12,
				desc: "Time from the request to the first byte of its reply, p99, per server the workload sent to (destination: its ip:port): which server is slow."},
				q("histogram_quantile(0.99, "+perWorkload("sum by ("+byWorkload+", destination, le) (rate("+p.duration+`_bucket{%s, kind="client"}`+rateInterval+"))")+")", legend+" → {{destination}} p99")))
	}
	return section{title: p.name, panels: panels}
}
