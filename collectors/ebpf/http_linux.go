//go:build linux

package ebpf

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/ebpf/route"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
	"github.com/vigil-agent/vigil/internal/overhead"
)

// The HTTP hot path: every request seen costs a decode, a parse of its
// start line and a few headers, three map operations (the last one its
// workload's outcome tally) and two metric updates, without allocating once its route, host and workload are
// cached. Spans are decided when the request starts (sampled or not) and
// only built for the sampled ones and for errors.

// connKey names one socket of one process.
type connKey struct{ pid, fd uint32 }

// pendingRequest is a request waiting for its response.
type pendingRequest struct {
	server  bool
	start   time.Time
	method  int
	version string
	route   *routeInfo
	host    string
	wl      workload.Identity
	cgroup  uint64
	pid     uint32
	tid     uint32
	comm    [16]int8
	local   netip.AddrPort
	remote  netip.AddrPort
	tls     bool // seen in a TLS library's plaintext (bpf/tls.h)

	// Span identity, decided once the head is known (see decide).
	decided  bool
	sampled  bool
	traceID  [16]byte
	spanID   [8]byte
	parentID [8]byte

	// head collects a request head longer than one window until its
	// later windows arrived (windowsLeft) or the head ended.
	head        []byte
	windowsLeft int
	counted     bool // counted in threads
	unanswered  bool // counted in vigil_http_server_requests_unanswered_total
	overdue     bool // server: counted unanswered in its tally (http_hang_after); client: counted slow (http_slow_after)
}

// routeInfo is a request target with its path, route and the route's
// (capped) metric label, cached by target.
type routeInfo struct {
	target, path, route, label string
}

// httpKey names the series a finished request updates.
type httpKey struct {
	cgroup uint64
	route  *routeInfo
	method uint8
	class  uint8
	server bool
}

type httpSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// threadState is what a thread is serving: how many server requests read
// on it are unanswered, and the last one.
type threadState struct {
	n    int
	last connKey
}

// Bounds of the hot path's caches; each is emptied when full.
const (
	maxCachedRoutes = 4096
	maxCachedHosts  = 1024
)

// httpState is the HTTP reader's state.
type httpState struct {
	pending  map[connKey]int32 // index into slab
	slab     []pendingRequest
	free     []int32
	threads  map[uint32]threadState
	routes   map[string]*routeInfo
	hosts    map[string]string
	series   map[httpKey]httpSeries
	peers    map[peerKey]peerSeries
	wls      map[uint64]workload.Identity
	unknown  map[uint64]uint64 // cgroup ID → kernel time to ask again
	reset    time.Time
	ev       httpEvent // the event being handled
	buf      [1 + len(httpEvent{}.Data)]byte
	limiter  rateLimiter
	ratioMax uint64 // root requests whose trace ID's low bits are below it are sampled

	// Unanswered server requests: the pending requests are swept once per
	// evidence interval, from the HTTP reader (on events and when it is
	// idle); tallies are the outcomes since the last batch.
	events    uint32
	lastSweep time.Time
	tallies   *tallies
	// baseRatioMax is ratioMax as configured; shedLevel the overhead
	// level ratioMax and the limiter's rate were last set for.
	baseRatioMax uint64
	shedLevel    overhead.Level

	// l7 is the state of the other protocols on the ring (l7_linux.go).
	l7 *l7State
	// gen is the loss generation (bpf/common.h, http_ring_gen) of the
	// last record read: a record with another one follows lost records.
	gen uint32
	// dns is DNS's (dns_linux.go).
	dns *dnsState
	// h2 is HTTP/2's and gRPC's (h2_linux.go).
	h2 *h2State
}

// peerSeries are a client's series for one destination and status class.
type peerSeries struct {
	requests, seconds prometheus.Counter
}

func newHTTPState(cfg *Config) *httpState {
	s := &httpState{pending: map[connKey]int32{}, threads: map[uint32]threadState{}, routes: map[string]*routeInfo{},
		hosts: map[string]string{}, series: map[httpKey]httpSeries{}, peers: map[peerKey]peerSeries{}, wls: map[uint64]workload.Identity{}, unknown: map[uint64]uint64{},
		limiter: rateLimiter{rate: float64(cfg.Spans.MaxPerSecond)}, tallies: newTallies(), l7: newL7State(), dns: newDNSState(), h2: newH2State()}
	switch r := cfg.Spans.SampleRatio; {
	case r >= 1:
		s.ratioMax = math.MaxUint64
	case r > 0:
		s.ratioMax = uint64(r * (1 << 63) * 2)
	}
	s.baseRatioMax = s.ratioMax
	return s
}

// rateLimiter is a token bucket of rate tokens a second (burst: one
// second's worth) driven by the events' kernel timestamps; rate 0 allows
// everything.
type rateLimiter struct {
	rate   float64
	tokens float64
	last   uint64
}

func (l *rateLimiter) allow(nowNS uint64) bool {
	if l.rate <= 0 {
		return true
	}
	if nowNS > l.last {
		l.tokens = min(l.rate, l.tokens+float64(nowNS-l.last)/1e9*l.rate)
		l.last = nowNS
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// handleHTTP handles one sample of the HTTP ring buffer. A request read is
// the start of a server request, a request written the start of a client
// request; the status line in the other direction on the same process and
// descriptor completes it. Later windows of a long request head add to the
// pending request's head.
func (h *handlers) handleHTTP(b []byte) {
	st := h.http
	e := &st.ev
	if err := decodeHTTPEvent(b, e); err != nil {
		h.m.decodeErrors.WithLabelValues("http_events").Inc()
		h.log.Debug("dropped undecodable eBPF HTTP event", "err", err)
		return
	}
	if e.Gen != st.gen {
		st.gen = e.Gen
		h.ringGap()
	}
	key := connKey{e.Pid, e.Fd}
	if st.events++; st.events%32 == 0 {
		h.sweepHTTP(time.Now())
		h.closeH2(e.TsNs)
	}
	if e.Proto != protoHTTP {
		h.handleL7(e)
		return
	}
	if e.Window > 0 {
		h.headWindow(key, e)
		return
	}
	data := e.Data[:e.Captured]
	if e.HasPrefix != 0 {
		st.buf[0] = e.Prefix
		data = st.buf[:1+copy(st.buf[1:], data)]
	}
	if _, code, ok := parseStatusLine(data); ok {
		i, found := st.pending[key]
		if !found || st.slab[i].server != (e.Dir == httpWrite) {
			return
		}
		h.completeHTTP(key, i, code, e.TsNs)
		return
	}
	head, ok := parseRequestHead(data)
	if !ok || e.Family == 0 {
		return // looked like HTTP to the kernel's quick check only
	}
	if time.Since(st.reset) > seriesCacheTTL {
		clear(st.series)
		clear(st.wls)
		st.reset = time.Now()
	}
	if i, found := st.pending[key]; found {
		// Answered unseen, pipelined, or given up by its client (a new
		// connection on the same descriptor).
		h.countGivenUp(&st.slab[i], h.clock.time(e.TsNs))
		h.dropPending(key, i)
		h.m.httpUnmatched.Inc()
	}
	if len(st.pending) >= h.cfg.MaxPendingRequests {
		h.m.httpUnmatched.Add(float64(len(st.pending)))
		clear(st.pending)
		clear(st.threads)
		st.slab, st.free = st.slab[:0], st.free[:0]
	}
	var i int32
	if n := len(st.free); n > 0 {
		i, st.free = st.free[n-1], st.free[:n-1]
	} else {
		st.slab = append(st.slab, pendingRequest{})
		i = int32(len(st.slab) - 1)
	}
	p := &st.slab[i]
	*p = pendingRequest{server: e.Dir == httpRead, start: h.clock.time(e.TsNs), method: head.method, version: head.version,
		route: st.route(head.target), cgroup: e.CgroupId, pid: e.Pid, tid: e.Tid, comm: e.Comm,
		local: addrPort(e.Family, e.Saddr, e.Sport), remote: addrPort(e.Family, e.Daddr, e.Dport), tls: e.Tls != 0}
	p.wl = h.identity(e.CgroupId, e.TsNs)
	if !p.server {
		p.host = st.host(head.host)
	}
	st.pending[key] = i
	if p.server {
		t := st.threads[p.tid]
		t.n++
		t.last = key
		st.threads[p.tid] = t
		p.counted = true
	}
	// A head longer than the first window, not ended and without its
	// traceparent yet: wait for the next windows before deciding.
	if !head.complete && head.traceParent == nil && int(e.Size) > int(e.Captured) && h.cfg.HTTPHeadWindows > 1 {
		p.head = append(make([]byte, 0, len(data)+int(e.Captured)), data...)
		p.windowsLeft = min(h.cfg.HTTPHeadWindows, (int(e.Size)+len(e.Data)-2)/(len(e.Data)-1)) - 1
		if p.windowsLeft > 0 {
			return
		}
		p.head = nil
	}
	h.decide(p, head.traceParent, e.TsNs)
}

// headWindow adds a later window of a request head to its pending request.
func (h *handlers) headWindow(key connKey, e *httpEvent) {
	st := h.http
	i, ok := st.pending[key]
	if !ok {
		return
	}
	p := &st.slab[i]
	if p.head == nil || p.decided {
		return
	}
	p.head = append(p.head, e.Data[:e.Captured]...)
	p.windowsLeft--
	head, ok := parseRequestHead(p.head)
	if !ok {
		p.head = nil
		h.decide(p, nil, e.TsNs)
		return
	}
	if p.windowsLeft > 0 && !head.complete && head.traceParent == nil {
		return
	}
	if !p.server && p.host == "" {
		p.host = st.host(head.host)
	}
	p.head = nil
	h.decide(p, head.traceParent, e.TsNs)
}

// decide gives the request its span identity and sampling decision: the
// traceparent's trace and sampled flag when it carries one; for a client
// request made by a thread serving exactly one request, that server span's
// (link_clients_by_thread); otherwise a new trace, sampled by ratio and
// rate.
func (h *handlers) decide(p *pendingRequest, tpHeader []byte, nowNS uint64) {
	st := h.http
	p.decided = true
	binary.LittleEndian.PutUint64(p.spanID[:], rand.Uint64()|1)
	if tp, ok := parseTraceParent(tpHeader); ok {
		p.traceID, p.parentID, p.sampled = tp.TraceID, tp.SpanID, tp.Sampled
		return
	}
	if !p.server && h.cfg.Spans.LinkClientsByThread {
		if t, ok := st.threads[p.tid]; ok && t.n == 1 {
			if j, ok := st.pending[t.last]; ok && st.slab[j].server && st.slab[j].pid == p.pid {
				srv := &st.slab[j]
				if !srv.decided {
					srv.head = nil
					h.decide(srv, nil, nowNS)
				}
				p.traceID, p.parentID, p.sampled = srv.traceID, srv.spanID, srv.sampled
				return
			}
		}
	}
	lo := rand.Uint64() | 1
	binary.LittleEndian.PutUint64(p.traceID[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(p.traceID[8:], lo)
	ratioMax := st.ratioMax
	if l := h.shed.get(); l != st.shedLevel {
		// The governor sheds spans: a share of the configured ratio and cap.
		st.shedLevel = l
		ratioMax, st.limiter.rate = spanSampling(st.baseRatioMax, float64(h.cfg.Spans.MaxPerSecond), l)
		st.ratioMax = ratioMax
	}
	p.sampled = lo <= ratioMax && st.limiter.allow(nowNS)
}

// ringGap forgets what records lost from the HTTP ring could have
// mismatched for good: the queued Redis and PostgreSQL requests (a lost
// request or reply shifts the queue, and every later reply on the
// connection would be credited to the wrong command), counted unmatched,
// and their reply tails. Pending HTTP/1 requests stay: each connection has
// at most one, the next request replaces it (counted given up or
// unmatched), so a loss costs at most one sample per connection, while
// forgetting them all would drop every request in flight on the node,
// the server requests that wait to be counted unanswered (the hang
// evidence) among them, whenever any record anywhere is lost. DNS pairs by
// ID and HTTP/2 by stream, and the kernel tells of HTTP/2 pieces it could
// not send (VIGIL_H2_LOST): they stay too.
func (h *handlers) ringGap() {
	st := h.http
	h.m.ringGaps.WithLabelValues("http").Inc()
	for _, c := range st.l7.conns {
		c.forget(h)
		c.tail = false
	}
}

// dropPending forgets pending request i of key.
func (h *handlers) dropPending(key connKey, i int32) {
	st := h.http
	p := &st.slab[i]
	if p.counted {
		if t := st.threads[p.tid]; t.n <= 1 {
			delete(st.threads, p.tid)
		} else {
			t.n--
			st.threads[p.tid] = t
		}
	}
	delete(st.pending, key)
	*p = pendingRequest{}
	st.free = append(st.free, i)
}

// unknownFirstRetry is how long after a cgroup's first miss the HTTP reader
// asks about it again (see identity).
const unknownFirstRetry = 100 * time.Millisecond

// identity is the workload of a cgroup, cached for seriesCacheTTL once
// the resolver knows it; an unknown cgroup is asked again after
// unknownFirstRetry the first time, then at most once a second (its
// cgroup_mkdir event may come later on the other ring).
func (h *handlers) identity(cg uint64, nowNS uint64) workload.Identity {
	st := h.http
	if wl, ok := st.wls[cg]; ok {
		return wl
	}
	if retry, ok := st.unknown[cg]; ok && nowNS < retry {
		return workload.Identity{}
	}
	wl := h.cgroups.Identity(cg)
	if wl.CgroupPath == "" {
		if len(st.unknown) >= maxCachedSeries {
			clear(st.unknown)
		}
		// A cgroup missed for the first time is most likely new: its
		// mkdir event (on the other ring) is read soon, so it is asked
		// about again after unknownFirstRetry; then once a second.
		retry := time.Second
		if _, missed := st.unknown[cg]; !missed {
			retry = unknownFirstRetry
		}
		st.unknown[cg] = nowNS + uint64(retry)
		return wl
	}
	delete(st.unknown, cg)
	if !named(wl) {
		return wl
	}
	if len(st.wls) >= maxCachedSeries {
		clear(st.wls)
	}
	st.wls[cg] = wl
	return wl
}

// route returns the cached route of a request target.
func (st *httpState) route(target []byte) *routeInfo {
	if r, ok := st.routes[string(target)]; ok {
		return r
	}
	if len(st.routes) >= maxCachedRoutes {
		clear(st.routes)
	}
	r := &routeInfo{target: string(target)}
	r.path, r.route = route.Of(r.target)
	st.routes[r.target] = r
	return r
}

// host interns a Host header value.
func (st *httpState) host(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := st.hosts[string(b)]; ok {
		return s
	}
	if len(st.hosts) >= maxCachedHosts {
		clear(st.hosts)
	}
	s := string(b)
	st.hosts[s] = s
	return s
}

// peerKey caches a client's series by destination.
type peerKey struct {
	cgroup uint64
	dest   netip.AddrPort
	class  uint8
}

var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClassIndex(code int) uint8 {
	if code < 100 || code > 599 {
		return 0
	}
	return uint8(code / 100)
}

// completeHTTP counts pending request i, answered with status at endNS,
// and hands it to the span queue when it is sampled or an error.
func (h *handlers) completeHTTP(key connKey, i int32, status int, endNS uint64) {
	h.countHTTP(&h.http.slab[i], status, endNS)
	h.dropPending(key, i)
}

// countHTTP counts request p (HTTP/1.x, or HTTP/2 from h2_linux.go),
// answered with status at endNS, and hands it to the span queue when it is
// sampled or an error.
func (h *handlers) countHTTP(p *pendingRequest, status int, endNS uint64) {
	st := h.http
	end := h.clock.time(endNS)
	k := httpKey{cgroup: p.cgroup, route: p.route, method: uint8(p.method), class: statusClassIndex(status), server: p.server}
	s, ok := st.series[k]
	if !ok {
		if len(st.series) >= maxCachedSeries {
			clear(st.series)
		}
		kind := "client"
		if p.server {
			kind = "server"
		}
		if p.route.label == "" {
			p.route.label = h.m.routeCap.value(p.route.route)
		}
		lv := h.m.httpCap.labels(p.wl, p.route.label, kind, methods[p.method], statusClasses[k.class])
		s = httpSeries{h.m.httpRequests.WithLabelValues(lv...), h.m.httpDuration.WithLabelValues(lv...)}
		if resolved(p.wl) {
			st.series[k] = s
		}
	}
	d := end.Sub(p.start)
	if d < 0 {
		d = 0
	}
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
	// A client request counted slow while it waited (sweepHTTP) is in
	// its tally already.
	if p.server || p.remote.IsValid() && !p.overdue {
		tk := tallyKey{cgroup: p.cgroup, signal: event.ServerHTTP}
		if !p.server {
			tk.signal, tk.dest = event.ClientHTTP, p.remote
		}
		if o := h.tally(st.tallies, tk, p.wl); o != nil {
			o.Total++
			if status >= 500 {
				o.Errors++
			}
			if d >= h.cfg.HTTPSlowAfter {
				o.Slow++
			}
		}
	}
	if !p.server && p.remote.IsValid() {
		pk := peerKey{cgroup: p.cgroup, dest: p.remote, class: k.class}
		c, ok := st.peers[pk]
		if !ok {
			if len(st.peers) >= maxCachedSeries {
				clear(st.peers)
			}
			lv := h.m.httpPeerCap.labels(p.wl, p.remote.String(), statusClasses[k.class])
			c = peerSeries{h.m.httpPeer.WithLabelValues(lv...), h.m.httpPeerSeconds.WithLabelValues(lv...)}
			if resolved(p.wl) {
				st.peers[pk] = c
			}
		}
		c.requests.Inc()
		c.seconds.Add(d.Seconds())
	}
	if !p.decided {
		h.decide(p, nil, endNS)
	}
	switch {
	case !h.spans.wanted():
		h.m.spansUnexported.Inc()
	case p.sampled, isErrorStatus(p.server, status):
		h.spans.add(p, status, end)
	default:
		h.m.spansSampledOut.Inc()
	}
}

// sweepHTTP looks at every pending request (at most
// max_pending_requests) once per evidence interval, from the HTTP reader
// (every 32 events and when it is idle), and then publishes the interval's
// outcomes. A server request waiting longer than http_hang_after is
// counted unanswered in its workload's tally, once: the evidence of a
// replica that reads requests and answers none (it counts as answered too
// if its answer comes later, so a slow or long-poll endpoint shows at most
// one unanswered per answered). One waiting longer than
// http_unanswered_after is counted in
// vigil_http_server_requests_unanswered_total, once. A request whose
// response was never seen (written by a call Vigil does not trace) is
// counted too, once; the default alert asks for most of a workload's
// requests to be unanswered.
//
// A client request waiting longer than http_slow_after is counted in its
// destination's tally then, total and slow, once (and not again when its
// answer comes), as is one replaced unanswered by the next request on its
// descriptor after as long: a caller that gives up first (a timeout
// shorter than its dependency's answers) sees no answer to time, and its
// dependency is slow all the same.
func (h *handlers) sweepHTTP(now time.Time) {
	st := h.http
	if now.Sub(st.lastSweep) < h.cfg.EvidenceInterval {
		return
	}
	st.lastSweep = now
	h.sweepDNS(now)
	hang := now.Add(-h.cfg.HTTPHangAfter)
	cut := now.Add(-h.cfg.HTTPUnansweredAfter)
	for _, i := range st.pending {
		p := &st.slab[i]
		if !p.server {
			h.countGivenUp(p, now)
			continue
		}
		if p.unanswered {
			continue
		}
		if !p.overdue && p.start.Before(hang) {
			p.overdue = true
			if o := h.tally(st.tallies, tallyKey{cgroup: p.cgroup, signal: event.ServerHTTP}, p.wl); o != nil {
				o.Unanswered++
			}
		}
		if p.start.Before(cut) {
			p.unanswered = true
			h.m.httpUnanswered.WithLabelValues(h.m.httpUnansweredCap.workloadLabels(p.wl)...).Inc()
		}
	}
	h.flushTallies(st.tallies, now)
}

// countGivenUp counts client request p, unanswered at at, in its
// destination's tally as slow, once, if it has waited http_slow_after
// (see sweepHTTP).
func (h *handlers) countGivenUp(p *pendingRequest, at time.Time) {
	if p.server || p.overdue || !p.remote.IsValid() || at.Sub(p.start) < h.cfg.HTTPSlowAfter {
		return
	}
	p.overdue = true
	if o := h.tally(h.http.tallies, tallyKey{cgroup: p.cgroup, signal: event.ClientHTTP, dest: p.remote}, p.wl); o != nil {
		o.Total++
		o.Slow++
	}
}

// isErrorStatus is the span status rule of the HTTP semantic conventions:
// 5xx on the server side, 4xx and 5xx on the client side.
func isErrorStatus(server bool, status int) bool {
	if server {
		return status >= 500
	}
	return status >= 400
}
