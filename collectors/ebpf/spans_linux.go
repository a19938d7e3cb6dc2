//go:build linux

package ebpf

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigil-agent/vigil/component"
)

// scopeName is the instrumentation scope of the spans Vigil makes.
const scopeName = "github.com/vigil-agent/vigil/collectors/ebpf"

// maxQueuedSpans bounds spans waiting to be handed to the traces consumer.
const maxQueuedSpans = 8192

// httpSpan is one finished request that is exported: an HTTP request, or
// a Redis or PostgreSQL one when db is set (req then carries the process,
// workload, addresses, side, start and trace identity only).
type httpSpan struct {
	req    pendingRequest
	status int
	end    time.Time
	db     *dbSpan
	rpc    *rpcSpan
}

// rpcSpan is what a gRPC call's span says besides pendingRequest's common
// fields.
type rpcSpan struct {
	service, method string
	code            int
	codeName        string
	failed          bool
}

// dbSpan is what a Redis or PostgreSQL span says besides pendingRequest's
// common fields.
type dbSpan struct {
	system    string // db.system.name: redis, postgresql; or dns
	operation string // the command (GET, SELECT, …; other or OTHER), or the DNS query type
	errType   string // the error code or SQLSTATE class, "" without error
	dnsRCode  string // DNS: the response code (or timeout)
	transport string // DNS: udp or tcp
}

// spanQueue hands finished requests to the traces consumer in batches, off
// the ring buffer reader's goroutine; when the consumer falls behind, spans
// are dropped and counted.
type spanQueue struct {
	next    consumer.Traces
	c       chan *httpSpan
	dropped prometheus.Counter
	node    string
	log     *slog.Logger
}

func newSpanQueue(next consumer.Traces, dropped prometheus.Counter, node string, log *slog.Logger) *spanQueue {
	return &spanQueue{next: next, c: make(chan *httpSpan, maxQueuedSpans), dropped: dropped, node: node, log: log}
}

// wanted reports whether a span handed to add now would go anywhere: not
// while no trace exporter is configured (see component.Wanter), so a span
// nobody exports is never built.
func (q *spanQueue) wanted() bool {
	return q.next != nil && component.Wanted(q.next)
}

// add queues a copy of request p, answered with status at end.
func (q *spanQueue) add(p *pendingRequest, status int, end time.Time) {
	if q.next == nil {
		return
	}
	s := &httpSpan{req: *p, status: status, end: end}
	s.req.head = nil
	select {
	case q.c <- s:
	default:
		q.dropped.Inc()
	}
}

// addDB queues a Redis or PostgreSQL span.
func (q *spanQueue) addDB(p *pendingRequest, db dbSpan, end time.Time) {
	if q.next == nil {
		return
	}
	s := &httpSpan{req: *p, end: end, db: &db}
	s.req.head = nil
	select {
	case q.c <- s:
	default:
		q.dropped.Inc()
	}
}

// addRPC queues a gRPC span.
func (q *spanQueue) addRPC(p *pendingRequest, rpc rpcSpan, end time.Time) {
	if q.next == nil {
		return
	}
	s := &httpSpan{req: *p, end: end, rpc: &rpc}
	s.req.head = nil
	select {
	case q.c <- s:
	default:
		q.dropped.Inc()
	}
}

// run sends spans in batches until ctx ends, then flushes: a batch goes
// out when it has 512 spans or interval after its first span. With no
// spans (no traces target, or no traffic) it does not wake up at all.
func (q *spanQueue) run(ctx context.Context, interval time.Duration) {
	t := time.NewTimer(interval)
	t.Stop()
	defer t.Stop()
	var batch []*httpSpan
	flush := func() {
		t.Stop()
		if len(batch) == 0 || q.next == nil {
			batch = batch[:0]
			return
		}
		td := q.traces(batch)
		if err := q.next.ConsumeTraces(context.Background(), td); err != nil {
			q.dropped.Add(float64(len(batch)))
			q.log.Warn("traces consumer refused eBPF HTTP spans", "spans", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case s := <-q.c:
			batch = append(batch, s)
			switch {
			case len(batch) >= 512:
				flush()
			case len(batch) == 1:
				t.Reset(interval)
			}
		case <-t.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case s := <-q.c:
					batch = append(batch, s)
				default:
					flush()
					return
				}
			}
		}
	}
}

// traces builds one ptrace.Traces with a resource per process.
func (q *spanQueue) traces(batch []*httpSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	byPID := map[uint32]ptrace.SpanSlice{}
	for _, s := range batch {
		spans, ok := byPID[s.req.pid]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			resourceAttrs(rs.Resource().Attributes(), &s.req, q.node)
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(scopeName)
			spans = ss.Spans()
			spans.EnsureCapacity(len(batch))
			byPID[s.req.pid] = spans
		}
		if s.rpc != nil {
			fillRPCSpan(spans.AppendEmpty(), s)
		} else if s.db != nil && s.db.system == "dns" {
			fillDNSSpan(spans.AppendEmpty(), s)
		} else if s.db != nil {
			fillDBSpan(spans.AppendEmpty(), s)
		} else {
			fillSpan(spans.AppendEmpty(), s)
		}
	}
	return td
}

func resourceAttrs(a pcommon.Map, p *pendingRequest, node string) {
	comm := commString(p.comm)
	name := comm
	if p.wl.Container != "" {
		name = p.wl.Container
	} else if p.wl.SystemdUnit != "" {
		name = p.wl.SystemdUnit
	}
	a.PutStr("service.name", name)
	a.PutInt("process.pid", int64(p.pid))
	a.PutStr("process.executable.name", comm)
	if node != "" {
		a.PutStr("host.name", node)
	}
	p.wl.PutAttributes(a) // k8s.*, container.id, the owner; service.name when known
}

// fillSpan sets a span following the OpenTelemetry HTTP semantic
// conventions, with the identity decided when the request started: a
// child of the span named by the request's traceparent, or of the server
// span the client request was made under, or a root span.
func fillSpan(sp ptrace.Span, s *httpSpan) {
	p := &s.req
	sp.SetTraceID(pcommon.TraceID(p.traceID))
	sp.SetSpanID(pcommon.SpanID(p.spanID))
	if p.parentID != ([8]byte{}) {
		sp.SetParentSpanID(pcommon.SpanID(p.parentID))
	}
	method := methods[p.method]
	sp.SetName(method + " " + p.route.route)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(p.start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.end))
	a := sp.Attributes()
	a.EnsureCapacity(16)
	a.PutStr("http.request.method", method)
	a.PutStr("url.path", p.route.path)
	a.PutStr("http.route", p.route.route)
	a.PutInt("http.response.status_code", int64(s.status))
	a.PutStr("network.protocol.name", "http")
	a.PutStr("network.protocol.version", p.version)
	a.PutStr("network.transport", "tcp")
	a.PutStr("network.peer.address", p.remote.Addr().String())
	a.PutInt("network.peer.port", int64(p.remote.Port()))
	if p.server {
		sp.SetKind(ptrace.SpanKindServer)
		a.PutStr("server.address", p.local.Addr().String())
		a.PutInt("server.port", int64(p.local.Port()))
		a.PutStr("client.address", p.remote.Addr().String())
		a.PutInt("client.port", int64(p.remote.Port()))
		a.PutStr("url.scheme", scheme(p.tls))
		if isErrorStatus(true, s.status) {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	} else {
		sp.SetKind(ptrace.SpanKindClient)
		a.PutStr("server.address", p.remote.Addr().String())
		a.PutInt("server.port", int64(p.remote.Port()))
		a.PutStr("url.full", scheme(p.tls)+"://"+hostOr(p.host, p.remote.String())+p.route.target)
		if isErrorStatus(false, s.status) {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
	}
	if s.status >= 400 {
		a.PutStr("error.type", strconv.Itoa(s.status))
	}
	if p.tls {
		a.PutBool("tls", true)
	}
}

// scheme is a request's URL scheme: https when its plaintext was taken
// from a TLS library (bpf/tls.h).
func scheme(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}

// fillDBSpan sets a Redis or PostgreSQL span following the OpenTelemetry
// database semantic conventions: named by the command, a client span on
// the caller's side and a server span on the server's, an error status
// with error.type when the reply was an error.
func fillDBSpan(sp ptrace.Span, s *httpSpan) {
	p, db := &s.req, s.db
	sp.SetTraceID(pcommon.TraceID(p.traceID))
	sp.SetSpanID(pcommon.SpanID(p.spanID))
	if p.parentID != ([8]byte{}) {
		sp.SetParentSpanID(pcommon.SpanID(p.parentID))
	}
	sp.SetName(db.operation)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(p.start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.end))
	a := sp.Attributes()
	a.EnsureCapacity(10)
	a.PutStr("db.system.name", db.system)
	a.PutStr("db.operation.name", db.operation)
	putTCPEnds(sp, a, p)
	if db.errType != "" {
		a.PutStr("error.type", db.errType)
		sp.Status().SetCode(ptrace.StatusCodeError)
	}
	if p.tls {
		a.PutBool("tls", true)
	}
}

// fillDNSSpan sets a DNS query's span: named "DNS <qtype>", a client span
// on the resolver's side and a server span on the server's, with the
// query type and response code, and an error status (error.type the
// rcode) for any rcode but NOERROR, as the failed label counts it.
func fillDNSSpan(sp ptrace.Span, s *httpSpan) {
	p, db := &s.req, s.db
	sp.SetTraceID(pcommon.TraceID(p.traceID))
	sp.SetSpanID(pcommon.SpanID(p.spanID))
	if p.parentID != ([8]byte{}) {
		sp.SetParentSpanID(pcommon.SpanID(p.parentID))
	}
	sp.SetName("DNS " + db.operation)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(p.start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.end))
	a := sp.Attributes()
	a.EnsureCapacity(10)
	a.PutStr("dns.question.type", db.operation)
	a.PutStr("dns.response_code", db.dnsRCode)
	a.PutStr("network.transport", db.transport)
	server := p.remote
	sp.SetKind(ptrace.SpanKindClient)
	if p.server {
		sp.SetKind(ptrace.SpanKindServer)
		server = p.local
	} else {
		a.PutStr("network.peer.address", p.remote.Addr().String())
		a.PutInt("network.peer.port", int64(p.remote.Port()))
	}
	a.PutStr("server.address", server.Addr().String())
	a.PutInt("server.port", int64(server.Port()))
	if db.dnsRCode != dnsRCodes[0] {
		a.PutStr("error.type", db.dnsRCode)
		sp.Status().SetCode(ptrace.StatusCodeError)
	}
}

// fillRPCSpan sets a gRPC call's span following the OpenTelemetry RPC
// semantic conventions: named "<service>/<method>", rpc.system grpc, the
// status code, an error status for the codes of rpcSpan.failed.
func fillRPCSpan(sp ptrace.Span, s *httpSpan) {
	p, rpc := &s.req, s.rpc
	sp.SetTraceID(pcommon.TraceID(p.traceID))
	sp.SetSpanID(pcommon.SpanID(p.spanID))
	if p.parentID != ([8]byte{}) {
		sp.SetParentSpanID(pcommon.SpanID(p.parentID))
	}
	sp.SetName(rpc.service + "/" + rpc.method)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(p.start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.end))
	a := sp.Attributes()
	a.EnsureCapacity(12)
	a.PutStr("rpc.system", "grpc")
	a.PutStr("rpc.service", rpc.service)
	a.PutStr("rpc.method", rpc.method)
	a.PutInt("rpc.grpc.status_code", int64(rpc.code))
	a.PutStr("network.protocol.name", "http")
	a.PutStr("network.protocol.version", "2")
	putTCPEnds(sp, a, p)
	if rpc.failed {
		a.PutStr("error.type", rpc.codeName)
		sp.Status().SetCode(ptrace.StatusCodeError)
	}
	if p.tls {
		a.PutBool("tls", true)
	}
}

// putTCPEnds sets a database or RPC span's kind and its TCP ends: the
// peer, the server and, on the server side, the client.
func putTCPEnds(sp ptrace.Span, a pcommon.Map, p *pendingRequest) {
	a.PutStr("network.transport", "tcp")
	a.PutStr("network.peer.address", p.remote.Addr().String())
	a.PutInt("network.peer.port", int64(p.remote.Port()))
	server := p.remote
	sp.SetKind(ptrace.SpanKindClient)
	if p.server {
		sp.SetKind(ptrace.SpanKindServer)
		server = p.local
		a.PutStr("client.address", p.remote.Addr().String())
		a.PutInt("client.port", int64(p.remote.Port()))
	}
	a.PutStr("server.address", server.Addr().String())
	a.PutInt("server.port", int64(server.Port()))
}

func hostOr(host, fallback string) string {
	if host != "" {
		return host
	}
	return fallback
}
