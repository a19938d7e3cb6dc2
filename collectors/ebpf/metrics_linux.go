//go:build linux

package ebpf

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// overflowValue replaces the capped label (destination or route) of every
// series beyond a family's cap; its workload labels are emptied.
const overflowValue = "overflow"

// capper bounds the distinct keys (workload + destination or route) a
// metric family may create. Keys beyond the cap are folded into one
// overflow series, and the fold is counted.
type capper struct {
	mu       sync.Mutex
	max      int
	seen     map[string]struct{}
	overflow prometheus.Counter
}

func newCapper(max int, overflow prometheus.Counter) *capper {
	return &capper{max: max, seen: map[string]struct{}{}, overflow: overflow}
}

// allow reports whether key may have its own series.
func (c *capper) allow(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok {
		return true
	}
	if len(c.seen) < c.max {
		c.seen[key] = struct{}{}
		return true
	}
	c.overflow.Inc()
	return false
}

// labels returns the label values to use for a series of workload wl and
// capped value v, followed by rest (small fixed enumerations that never
// count towards the cap). Past the cap, the workload labels are emptied and
// v becomes "overflow".
func (c *capper) labels(wl workload.Identity, v string, rest ...string) []string {
	return c.labelsWith(wl, v, "", rest...)
}

// labelsWith is labels, with sub (a small enumeration such as a command,
// which is also among rest) counted in the key: Redis and PostgreSQL
// spend a key per workload, destination and command, so that adding the
// destination did not raise the bound on their series (max_series keys,
// each at most kinds × error codes series).
func (c *capper) labelsWith(wl workload.Identity, v, sub string, rest ...string) []string {
	vals := wl.Labels()
	key := wl.CgroupPath + "\x00" + v
	if sub != "" {
		key += "\x00" + sub
	}
	if !c.allow(key) {
		clear(vals)
		v = overflowValue
	}
	return append(append(vals, v), rest...)
}

// serverAddr is the server's address of a request on a connection or
// socket with addresses local and remote: remote for a client, local (the
// listening address, as for vigil_tcp_accepts_total) for a server.
func serverAddr(server bool, local, remote netip.AddrPort) netip.AddrPort {
	if server {
		return local
	}
	return remote
}

// destination is the destination label value of server address a; empty
// when the record had no socket address.
func destination(a netip.AddrPort) string {
	if !a.IsValid() || a.Port() == 0 && a.Addr().IsUnspecified() {
		return ""
	}
	return a.String()
}

// workloadLabels is labels for families keyed by workload alone: past the
// cap every workload label becomes "overflow".
func (c *capper) workloadLabels(wl workload.Identity, rest ...string) []string {
	vals := wl.Labels()
	if !c.allow(wl.CgroupPath) {
		for i := range vals {
			vals[i] = overflowValue
		}
	}
	return append(vals, rest...)
}

// value caps a single value (for example routes across all workloads).
func (c *capper) value(v string) string {
	if !c.allow(v) {
		return overflowValue
	}
	return v
}

func labelNames(extra ...string) []string {
	return append(append([]string{}, workload.LabelNames...), extra...)
}

// Buckets: connects on a LAN take tens of microseconds to milliseconds;
// connections live from milliseconds to hours; requests from 100µs up.
var (
	connectBuckets  = prometheus.ExponentialBuckets(0.00005, 4, 10) // 50µs … 13s
	lifetimeBuckets = prometheus.ExponentialBuckets(0.001, 4, 12)   // 1ms … 70min
	requestBuckets  = prometheus.ExponentialBuckets(0.0001, 2.5, 13)
)

// metrics are everything the collector exports.
type metrics struct {
	programLoaded    *prometheus.GaugeVec
	featureAvailable *prometheus.GaugeVec
	eventsLost       *prometheus.Desc // read from the kernel's per-CPU counters
	programRunTime   *prometheus.Desc
	programRunCount  *prometheus.Desc
	eventsRead       *prometheus.CounterVec
	decodeErrors     *prometheus.CounterVec
	seriesOverflow   *prometheus.CounterVec
	fastPath         *prometheus.CounterVec
	outcomesDropped  prometheus.Counter
	spansDropped     prometheus.Counter
	spansSampledOut  prometheus.Counter
	spansUnexported  prometheus.Counter
	httpUnmatched    prometheus.Counter
	unresolved       prometheus.Counter

	tcpAttempts  *prometheus.CounterVec
	tcpFailures  *prometheus.CounterVec
	tcpConnect   *prometheus.HistogramVec
	tcpAccepts   *prometheus.CounterVec
	tcpActive    *prometheus.GaugeVec
	tcpLifetime  *prometheus.HistogramVec
	tcpRetrans   *prometheus.CounterVec
	tcpResets    *prometheus.CounterVec
	tcpCap       *capper
	procExecs    *prometheus.CounterVec
	procExits    *prometheus.CounterVec
	oomKills     *prometheus.CounterVec
	procCap      *capper
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	httpCap      *capper
	routeCap     *capper
	// httpPeer counts client requests by the server they went to, so that
	// errors a workload gets from a dependency name the dependency.
	httpPeer    *prometheus.CounterVec
	httpPeerCap *capper
	// httpPeerSeconds sums the time those requests took, per destination
	// and status class: with httpPeer, a dependency's mean latency as its
	// callers see it.
	httpPeerSeconds *prometheus.CounterVec
	// httpUnanswered counts server requests still unanswered after
	// Config.HTTPUnansweredAfter, by workload.
	httpUnanswered    *prometheus.CounterVec
	httpUnansweredCap *capper

	// Redis and PostgreSQL requests (l7_linux.go), and what the kernel's
	// two-byte check sent that user space did not take.
	redisRequests  *prometheus.CounterVec
	redisDuration  *prometheus.HistogramVec
	redisCap       *capper
	pgRequests     *prometheus.CounterVec
	pgDuration     *prometheus.HistogramVec
	pgCap          *capper
	protoRejected  *prometheus.CounterVec
	protoUnmatched *prometheus.CounterVec
	ringGaps       *prometheus.CounterVec

	// DNS queries (dns_linux.go).
	dnsRequests *prometheus.CounterVec
	dnsDuration *prometheus.HistogramVec
	dnsCap      *capper

	// gRPC calls and what HTTP/2 could not decode (h2_linux.go).
	grpcRequests  *prometheus.CounterVec
	grpcDuration  *prometheus.HistogramVec
	grpcCap       *capper
	grpcMethodCap *capper
	h2Dropped     *prometheus.CounterVec
	h2Conns       prometheus.Gauge
}

func newMetrics(cfg *Config) *metrics {
	m := &metrics{
		programLoaded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_ebpf_program_loaded",
			Help: "Whether the eBPF program is loaded and attached (1) or not (0)."}, []string{"program"}),
		featureAvailable: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_ebpf_feature_available",
			Help: "Whether the kernel offers the eBPF feature (btf, ringbuf, tp_btf, tracepoint, uprobe, uprobe_multi, tracefs)."}, []string{"feature"}),
		eventsLost: prometheus.NewDesc("vigil_ebpf_events_lost_total",
			"Events the eBPF program could not hand to user space because its ring buffer was full.", []string{"program"}, nil),
		programRunTime: prometheus.NewDesc("vigil_ebpf_program_run_seconds_total",
			"Time the kernel spent running the program (needs bpf_stats: true).", []string{"program"}, nil),
		programRunCount: prometheus.NewDesc("vigil_ebpf_program_runs_total",
			"Times the kernel ran the program (needs bpf_stats: true).", []string{"program"}, nil),
		eventsRead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_events_total",
			Help: "Events read from the kernel, by ring buffer."}, []string{"ring"}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_decode_errors_total",
			Help: "Samples from the kernel that could not be decoded and were dropped, by ring buffer."}, []string{"ring"}),
		seriesOverflow: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_series_overflow_total",
			Help: "Observations folded into the overflow series because the family reached max_series (or max_routes)."}, []string{"family"}),
		fastPath: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_fast_path_events_total",
			Help: "Fast-path events published to the agent's event bus, by kind."}, []string{"kind"}),
		outcomesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_ebpf_outcomes_dropped_total",
			Help: "Request and connect outcomes not tallied as evidence because a batch already had 4096 workload and destination keys."}),
		spansDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_ebpf_spans_dropped_total",
			Help: "HTTP, Redis and PostgreSQL spans dropped because the span queue was full or the traces consumer failed."}),
		spansSampledOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_ebpf_spans_sampled_out_total",
			Help: "Finished HTTP, Redis and PostgreSQL requests not exported as spans by the sampling rules (spans.sample_ratio, spans.max_per_second, an unsampled traceparent)."}),
		spansUnexported: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_ebpf_spans_unexported_total",
			Help: "Finished HTTP, Redis and PostgreSQL requests for which no span was made because no trace exporter is configured (exporters with the traces signal)."}),
		httpUnmatched: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_ebpf_http_unmatched_total",
			Help: "HTTP requests forgotten without a response: max_pending_requests was reached, or a new request came on the connection first."}),

		unresolved: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_ebpf_unresolved_cgroups_total",
			Help: "Cgroup IDs in kernel events that named no known cgroup (removed before it was seen, or unreadable), so the event has no workload labels."}),

		tcpAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_tcp_connect_attempts_total",
			Help: "Outbound TCP connection attempts that finished (established or failed)."}, labelNames("destination")),
		tcpFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_tcp_connect_failures_total",
			Help: "Outbound TCP connection attempts that failed, by reason (refused, timeout, unreachable, aborted, error)."}, labelNames("destination", "reason")),
		tcpConnect: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_tcp_connect_duration_seconds",
			Help: "Time from SYN sent to connection established, for successful outbound connects.", Buckets: connectBuckets}, labelNames("destination")),
		tcpAccepts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_tcp_accepts_total",
			Help: "Inbound TCP connections established, by listening address."}, labelNames("destination")),
		tcpActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_tcp_active_connections",
			Help: "TCP connections established since the agent started and still open."}, labelNames("destination", "direction")),
		tcpLifetime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_tcp_connection_duration_seconds",
			Help: "Lifetime of closed TCP connections, from established to closed.", Buckets: lifetimeBuckets}, labelNames("destination", "direction")),
		tcpRetrans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_tcp_retransmits_total",
			Help: "TCP segments retransmitted (including SYNs)."}, labelNames("destination", "direction")),
		tcpResets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_tcp_resets_total",
			Help: "TCP resets sent or received on connections the agent follows."}, labelNames("destination", "direction", "side")),
		procExecs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_process_execs_total",
			Help: "Programs executed (execve)."}, labelNames()),
		procExits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_process_exits_total",
			Help: "Processes that exited, by outcome (success: code 0, error: non-zero code, signal: killed by a signal)."}, labelNames("outcome")),
		oomKills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_oom_kills_total",
			Help: "Processes chosen as victims by the OOM killer."}, labelNames()),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_http_requests_total",
			Help: "HTTP/1.x and HTTP/2 (not gRPC) requests seen, by side (server or client), method, route and status class."}, labelNames("route", "kind", "method", "status_class")),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_http_request_duration_seconds",
			Help: "Time from request to response start, as seen in the process's syscalls.", Buckets: requestBuckets}, labelNames("route", "kind", "method", "status_class")),
		httpPeer: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_http_client_requests_by_destination_total",
			Help: "HTTP/1.x requests the workload sent as a client, by the server's address (ip:port) and the answer's status class."}, labelNames("destination", "status_class")),
		httpPeerSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_http_client_request_seconds_by_destination_total",
			Help: "Time from request to response start of the requests in vigil_http_client_requests_by_destination_total, summed: their ratio is the mean latency of a dependency as the caller sees it."}, labelNames("destination", "status_class")),
		httpUnanswered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_http_server_requests_unanswered_total",
			Help: "HTTP/1.x requests the workload read as a server and had not answered after http_unanswered_after, counted once each (answered later or never)."}, labelNames()),
	}
	m.redisRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_redis_requests_total",
		Help: "Redis commands seen (RESP2 and RESP3), by server address (destination: the server's ip:port, on the server side its listening address), side (server or client), command (unknown ones as other) and error code (none when the reply is not an error)."},
		labelNames("destination", "command", "kind", "error"))
	m.redisDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_redis_request_duration_seconds",
		Help: "Time from a Redis command to the start of its reply, as seen in the process's syscalls.", Buckets: requestBuckets},
		labelNames("destination", "command", "kind", "error"))
	m.pgRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_postgres_requests_total",
		Help: "PostgreSQL queries seen (simple queries and extended-protocol Executes), by server address (destination: the server's ip:port, on the server side its listening address), side (server or client), SQL command (its first keyword) and error (the SQLSTATE class, none without error)."},
		labelNames("destination", "command", "kind", "error"))
	m.pgDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_postgres_request_duration_seconds",
		Help: "Time from a PostgreSQL query to the start of its result, as seen in the process's syscalls.", Buckets: requestBuckets},
		labelNames("destination", "command", "kind", "error"))
	m.protoRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_protocol_rejected_total",
		Help: "Transfers the kernel's quick check sent as a protocol that user space did not take: malformed (not that protocol), unexpected (a reply with no request waiting on its connection) or attaching (a request sent while the programs were being attached, whose reply may have gone by unseen)."},
		[]string{"protocol", "reason"})
	m.protoUnmatched = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_protocol_unmatched_total",
		Help: "Redis, PostgreSQL and DNS requests forgotten without a reply: their replies were past the captured window, too many were in flight, or the server skipped them after an error (DNS: a query over TCP unanswered after dns_timeout, or max_pending_requests reached)."},
		[]string{"protocol"})
	m.ringGaps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_ring_gaps_total",
		Help: "Times the reader found that records were lost from a ring buffer (it was full) before the one it read; on the http ring, the Redis and PostgreSQL requests waiting for replies were then forgotten (counted unmatched), lest later replies be credited to the wrong request."},
		[]string{"ring"})
	m.dnsRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_dns_requests_total",
		Help: "DNS queries seen (UDP, and TCP), by server address (destination: the resolver's ip:port, on the server side its listening address), side (client or server), query type, response code (timeout: no answer within dns_timeout) and whether it failed (any rcode but NOERROR)."},
		labelNames("destination", "kind", "qtype", "rcode", "failed"))
	m.dnsDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_dns_request_duration_seconds",
		Help: "Time from a DNS query to its answer (or to its timeout), as seen in the process's syscalls.", Buckets: requestBuckets},
		labelNames("destination", "kind", "qtype", "rcode", "failed"))
	m.dnsCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("dns"))
	m.redisCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("redis"))
	m.pgCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("postgres"))
	m.tcpCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("tcp"))
	m.httpPeerCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("http_destination"))
	m.httpUnansweredCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("http_unanswered"))
	m.procCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("process"))
	m.httpCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("http"))
	m.routeCap = newCapper(cfg.MaxRoutes, m.seriesOverflow.WithLabelValues("http_route"))
	newH2Metrics(m, cfg)
	return m
}

// collectors returns every metric vector, for Update.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.programLoaded, m.featureAvailable, m.eventsRead, m.decodeErrors,
		m.seriesOverflow, m.fastPath, m.outcomesDropped, m.spansDropped, m.spansSampledOut, m.spansUnexported, m.httpUnmatched, m.unresolved,
		m.tcpAttempts, m.tcpFailures, m.tcpConnect, m.tcpAccepts, m.tcpActive, m.tcpLifetime, m.tcpRetrans, m.tcpResets,
		m.procExecs, m.procExits, m.oomKills, m.httpRequests, m.httpDuration, m.httpPeer, m.httpPeerSeconds, m.httpUnanswered,
		m.redisRequests, m.redisDuration, m.pgRequests, m.pgDuration, m.protoRejected, m.protoUnmatched, m.ringGaps, m.dnsRequests, m.dnsDuration,
		m.grpcRequests, m.grpcDuration, m.h2Dropped, m.h2Conns}
}
