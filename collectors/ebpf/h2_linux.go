//go:build linux

package ebpf

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/ebpf/h2"
	"github.com/vigil-agent/vigil/collectors/workload"
)

// HTTP/2 and gRPC, from the pieces the kernel's frame walk sends
// (bpf/h2.h): each record is a piece of one direction's byte stream at its
// offset there; the bytes between two pieces are payloads the decoder does
// not need (DATA, PING, WINDOW_UPDATE, ...), fed to it as skips. One
// h2.Conn per process and descriptor decodes the connection; its exchanges
// are counted as gRPC calls (vigil_grpc_*) or, when not gRPC, as HTTP
// requests (vigil_http_*, with network.protocol.version 2 on their spans).

// Record flags (enum vigil_h2_flag).
const (
	h2Start   = 1
	h2Lost    = 2
	h2Abandon = 4
)

// Why the kernel gave a connection up (the lost record's window field).
const (
	h2ErrRingFull   = 1
	h2ErrUnreadable = 2
	h2ErrOverflow   = 3
)

// maxH2Conns bounds the HTTP/2 connections decoded at once: past it the
// least recently used one is dropped (counted evicted, its streams lost).
// A connection holds its two HPACK tables (4 KiB each as most peers use
// them, at most 2 × 64 KiB) and its open streams.
const maxH2Conns = 1024

// h2Conn is one HTTP/2 connection of one process: its decoder, the offset
// of each direction it was fed up to, and what its exchanges are counted
// under.
type h2Conn struct {
	dec           *h2.Conn
	pos           [2]uint32
	cgroup        uint64
	pid           uint32
	comm          [16]int8
	wl            workload.Identity
	local, remote netip.AddrPort
	tls           bool   // TLS plaintext (bpf/tls.h): the cursor is in h2_tls
	first, last   uint64 // kernel time of its first and last record
}

// h2Sock names a decoder by its connection's socket, as a TCP close
// event names it: the cgroup the kernel attributed the socket to and its
// two addresses (the cgroup tells apart loopback connections of two
// network namespaces).
type h2Sock struct {
	cgroup        uint64
	local, remote netip.AddrPort
}

// h2Closed is a TCP connection the events reader saw close (kernel time
// ts), for the HTTP reader to close its HTTP/2 decoder.
type h2Closed struct {
	sock h2Sock
	ts   uint64
}

const (
	// maxH2Closes bounds the closes waiting for the HTTP reader; past it
	// a close is not queued (counted: reason close_missed) and its
	// decoder lives until it is evicted, as before closes were followed.
	maxH2Closes = 4096
	// h2CloseDelay is how long after a close (kernel time) the HTTP
	// reader acts on it: the connection's last pieces, sent before it
	// closed, may still be in the HTTP ring, which another goroutine
	// reads. Acted on once the HTTP reader has read a record this much
	// later, or found its ring empty this much later.
	h2CloseDelay = uint64(100 * time.Millisecond)
)

// h2Closes hands TCP closes from the events reader to the HTTP reader.
type h2Closes struct {
	// open is the number of decoders (written by the HTTP reader): while
	// there are none, closes are not queued.
	open   atomic.Int64
	mu     sync.Mutex
	q      []h2Closed
	missed uint64 // closes not queued because q was full
	// hook, when set (tests), is called on the HTTP reader with the
	// process and descriptor of each decoder a close ended.
	hook atomic.Pointer[func(pid, fd uint32)]
}

// post queues the close of a TCP connection (events reader).
func (q *h2Closes) post(sock h2Sock, ts uint64) {
	if q.open.Load() == 0 {
		return
	}
	q.mu.Lock()
	if len(q.q) < maxH2Closes {
		q.q = append(q.q, h2Closed{sock, ts})
	} else {
		q.missed++
	}
	q.mu.Unlock()
}

// grpcKey names the series a finished gRPC call updates.
type grpcKey struct {
	cgroup          uint64
	service, method string
	code            int
	server          bool
}

// h2State is the HTTP reader's state for HTTP/2.
type h2State struct {
	conns    map[connKey]*h2Conn
	bySock   map[h2Sock]connKey // conns by socket, for closes
	closing  []h2Closed         // closes taken from the queue, not yet due
	missed   uint64             // h2Closes.missed as last counted
	cnt      h2.Counters        // what the decoders could not decode
	reported h2.Counters        // cnt as last added to vigil_ebpf_h2_dropped_total
	out      []h2.Exchange
	series   map[grpcKey]httpSeries
	reset    time.Time
}

func newH2State() *h2State {
	return &h2State{conns: map[connKey]*h2Conn{}, bySock: map[h2Sock]connKey{}, series: map[grpcKey]httpSeries{}}
}

func (c *h2Conn) sock() h2Sock { return h2Sock{c.cgroup, c.local, c.remote} }

// putH2 adds connection c under key, and dropH2 removes the one there;
// both keep the socket index and the count of open decoders.
func (h *handlers) putH2(key connKey, c *h2Conn) {
	st := h.http.h2
	st.conns[key] = c
	st.bySock[c.sock()] = key
	h.h2Closes.open.Store(int64(len(st.conns)))
	h.m.h2Conns.Set(float64(len(st.conns)))
}

func (h *handlers) dropH2(key connKey) {
	st := h.http.h2
	c := st.conns[key]
	if c == nil {
		return
	}
	delete(st.conns, key)
	if st.bySock[c.sock()] == key {
		delete(st.bySock, c.sock())
	}
	h.h2Closes.open.Store(int64(len(st.conns)))
	h.m.h2Conns.Set(float64(len(st.conns)))
}

// closeH2 closes the decoders of the TCP connections the events reader
// saw close at least h2CloseDelay before horizon (kernel time: the time of
// the record the HTTP reader is at, or now when its ring is empty). A
// decoder that started after the close (the same addresses reused) stays.
// Its streams still open are counted stream_unfinished.
func (h *handlers) closeH2(horizon uint64) {
	st, q := h.http.h2, &h.h2Closes
	q.mu.Lock()
	st.closing = append(st.closing, q.q...)
	clear(q.q)
	q.q = q.q[:0]
	missed := q.missed
	q.mu.Unlock()
	if d := missed - st.missed; d > 0 {
		h.m.h2Dropped.WithLabelValues("close_missed").Add(float64(d))
		st.missed = missed
	}
	hook := q.hook.Load()
	keep := st.closing[:0]
	for _, cl := range st.closing {
		if cl.ts+h2CloseDelay > horizon {
			keep = append(keep, cl)
			continue
		}
		key, ok := st.bySock[cl.sock]
		if !ok {
			continue
		}
		if c := st.conns[key]; c.first <= cl.ts {
			c.dec.Close()
			h.dropH2(key)
			if hook != nil {
				(*hook)(key.pid, key.fd)
			}
		}
	}
	clear(st.closing[len(keep):])
	st.closing = keep
	if len(st.closing) > maxH2Closes {
		// The HTTP reader's horizon stood still while closes came: keep
		// the newest.
		st.closing = append(st.closing[:0], st.closing[len(st.closing)-maxH2Closes:]...)
	}
	h.flushH2Counters()
}

// handleH2 handles one piece of an HTTP/2 connection.
func (h *handlers) handleH2(e *httpEvent) {
	st := h.http.h2
	key := connKey{e.Pid, e.Fd}
	c := st.conns[key]
	switch {
	case e.HasPrefix&h2Abandon != 0:
		// A server's first write looked like SETTINGS, and no preface
		// followed: not HTTP/2, nothing to count.
		if c != nil && c.dec.Side() == h2.SideUnknown {
			h.dropH2(key)
		}
		return
	case e.HasPrefix&h2Start != 0:
		if c != nil {
			c.dec.Close() // the descriptor was reused: the old connection closed
			h.dropH2(key)
		} else if len(st.conns) >= maxH2Conns {
			h.evictH2()
		}
		c = &h2Conn{dec: h2.NewConn(h2.DefaultLimits(), &st.cnt), cgroup: e.CgroupId, pid: e.Pid, comm: e.Comm,
			local: addrPort(e.Family, e.Saddr, e.Sport), remote: addrPort(e.Family, e.Daddr, e.Dport), tls: e.Tls != 0, first: e.TsNs}
		c.wl = h.identity(e.CgroupId, e.TsNs)
		h.putH2(key, c)
	case c == nil:
		return // its decoder was evicted (counted then)
	}
	c.last = e.TsNs
	dir := h2.Read
	if e.Dir == httpWrite {
		dir = h2.Write
	}
	if e.HasPrefix&h2Lost != 0 {
		r := h2.Overflow
		if e.Window == h2ErrRingFull {
			r = h2.Gap // a piece was not sent
		}
		c.dec.Lose(r)
		h.flushH2Counters()
		return
	}
	out := st.out[:0]
	if gap := e.Off - c.pos[dir&1]; gap != 0 {
		if gap > 1<<31 {
			c.dec.Lose(h2.Gap) // a piece behind the cursor: cannot happen
		} else {
			out = c.dec.Feed(out, dir, nil, int(gap), e.TsNs)
		}
	}
	data := e.Data[:e.Captured]
	out = c.dec.Feed(out, dir, data, len(data), e.TsNs)
	c.pos[dir&1] = e.Off + uint32(e.Captured)
	for i := range out {
		h.finishH2(c, &out[i])
	}
	clear(out)
	st.out = out[:0]
	h.flushH2Counters()
}

// evictH2 drops the least recently fed connection.
func (h *handlers) evictH2() {
	st := h.http.h2
	var old connKey
	var oldest *h2Conn
	for k, c := range st.conns {
		if oldest == nil || c.last < oldest.last {
			old, oldest = k, c
		}
	}
	if oldest != nil {
		oldest.dec.Lose(h2.Evicted)
		h.dropH2(old)
	}
}

// flushH2Counters adds what the decoders counted since the last call to
// vigil_ebpf_h2_dropped_total.
func (h *handlers) flushH2Counters() {
	st := h.http.h2
	for r := range st.cnt {
		if d := st.cnt[r] - st.reported[r]; d > 0 {
			h.m.h2Dropped.WithLabelValues(h2.Reason(r).String()).Add(float64(d))
			st.reported[r] = st.cnt[r]
		}
	}
}

// h2Method is the index in methods of an exchange's :method.
func h2Method(m string) int {
	if i := methodIndex([]byte(m)); i >= 0 {
		return i
	}
	switch m {
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return 9
}

// finishH2 counts one exchange of connection c.
func (h *handlers) finishH2(c *h2Conn, ex *h2.Exchange) {
	server := ex.Side == h2.Server
	p := pendingRequest{server: server, start: h.clock.time(ex.Start), method: h2Method(ex.Method), version: "2",
		wl: c.wl, cgroup: c.cgroup, pid: c.pid, comm: c.comm, local: c.local, remote: c.remote, tls: c.tls}
	if !ex.GRPC {
		end := ex.Response
		if end == 0 {
			end = ex.End
		}
		p.route = h.http.route([]byte(ex.Path))
		if !server {
			p.host = h.http.host([]byte(ex.Authority))
		}
		h.decide(&p, []byte(ex.Traceparent), ex.Start)
		h.countHTTP(&p, ex.Status, end)
		return
	}
	st := h.http.h2
	if time.Since(st.reset) > seriesCacheTTL {
		clear(st.series)
		st.reset = time.Now()
	}
	k := grpcKey{cgroup: c.cgroup, service: ex.GRPCService, method: ex.GRPCMethod, code: ex.GRPCStatus, server: server}
	s, ok := st.series[k]
	if !ok {
		if len(st.series) >= maxCachedSeries {
			clear(st.series)
		}
		kind := "client"
		if server {
			kind = "server"
		}
		service, method := ex.GRPCService, ex.GRPCMethod
		if h.m.grpcMethodCap.value(service+"/"+method) == overflowValue {
			service, method = overflowValue, overflowValue
		}
		lv := h.m.grpcCap.labels(c.wl, service, method, ex.GRPCStatusName(), kind)
		s = httpSeries{h.m.grpcRequests.WithLabelValues(lv...), h.m.grpcDuration.WithLabelValues(lv...)}
		if resolved(c.wl) {
			st.series[k] = s
		}
	}
	d := 0.0
	if ex.End > ex.Start {
		d = float64(ex.End-ex.Start) / 1e9
	}
	s.requests.Inc()
	s.duration.Observe(d)
	h.grpcSpan(&p, ex)
}

// grpcServerErrors are the codes a server span is an error for (the
// OpenTelemetry gRPC conventions); on the client side every code but OK is.
var grpcServerErrors = map[int]bool{2: true, 4: true, 12: true, 13: true, 14: true, 15: true}

// grpcSpan exports a finished gRPC call's span by the sampling rules of
// HTTP (a traceparent is not read from HTTP/2 headers: a new trace, by
// ratio and rate), or when it failed.
func (h *handlers) grpcSpan(p *pendingRequest, ex *h2.Exchange) {
	if !h.spans.wanted() {
		h.m.spansUnexported.Inc()
		return
	}
	h.decide(p, []byte(ex.Traceparent), ex.Start)
	failed := ex.GRPCStatus != 0
	if p.server {
		failed = grpcServerErrors[ex.GRPCStatus]
	}
	if !p.sampled && !failed {
		h.m.spansSampledOut.Inc()
		return
	}
	h.spans.addRPC(p, rpcSpan{service: ex.GRPCService, method: ex.GRPCMethod, code: ex.GRPCStatus,
		codeName: ex.GRPCStatusName(), failed: failed}, h.clock.time(ex.End))
}

// newH2Metrics adds the HTTP/2 and gRPC families to m.
func newH2Metrics(m *metrics, cfg *Config) {
	m.grpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_grpc_requests_total",
		Help: "gRPC calls seen (HTTP/2 in clear text), by side (server or client), service, method and status code name (OK, UNAVAILABLE, ...)."},
		labelNames("service", "method", "code", "kind"))
	m.grpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_grpc_request_duration_seconds",
		Help: "Time from a gRPC call's request headers to the end of its response (trailers or reset), as seen in the process's syscalls.", Buckets: requestBuckets},
		labelNames("service", "method", "code", "kind"))
	m.h2Conns = prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_ebpf_h2_connections",
		Help: "HTTP/2 connections being decoded (at most 1024): closed when their TCP connection closes, or evicted."})
	m.h2Dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ebpf_h2_dropped_total",
		Help: "HTTP/2 connections (no_preface, gap, bad_frame, hpack_error, table_over_cap, string_over_limit, overflow, evicted; close_missed: a TCP close not followed, the queue of 4096 full) and streams (stream_lost, stream_refused, stream_unfinished, streams_over_limit) and header blocks (header_list_over_limit) not decoded, by reason."},
		[]string{"reason"})
	m.grpcCap = newCapper(cfg.MaxSeries, m.seriesOverflow.WithLabelValues("grpc"))
	m.grpcMethodCap = newCapper(cfg.MaxRoutes, m.seriesOverflow.WithLabelValues("grpc_method"))
}
