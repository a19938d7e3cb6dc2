//go:build linux

package ebpf

import (
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/ebpf/pgproto"
	"github.com/vigil-agent/vigil/collectors/ebpf/redisproto"
	"github.com/vigil-agent/vigil/collectors/workload"
)

// Redis and PostgreSQL, from the records the kernel sends on the HTTP ring
// with proto set (bpf/http.h, vigil_l7_classify). The kernel only looked
// at two bytes: everything is checked here, and what is not the protocol
// is counted in vigil_ebpf_protocol_rejected_total. Requests are queued
// per process and descriptor in the order they were sent (pipelining) and
// each reply answers the oldest; the kernel sends the first window (511
// bytes) of a transfer only, so requests and replies past it are not seen
// (see docs/ebpf.md, Redis and PostgreSQL).

// Protocols of the HTTP ring's records (enum vigil_l7_proto).
const (
	protoHTTP     = 0
	protoRedis    = 1
	protoPostgres = 2
	protoDNS      = 3 // over UDP (dns_linux.go)
	protoDNSTCP   = 4 // over TCP, the message after its length
	protoDNSMsg   = 5 // over TCP, the message apart from its length
	protoH2       = 6 // HTTP/2: a piece of the kernel's frame walk (h2_linux.go)
	protoCount    = 7
)

var protoNames = [protoCount]string{"http", "redis", "postgres", "dns", "dns", "dns", "http2"}

// maxL7Queue bounds the requests waiting for their replies on one
// connection (a pipeline); older ones are forgotten and counted unmatched.
const maxL7Queue = 64

// maxPGStatements bounds the prepared statements remembered per
// connection (their names map an Execute to its SQL command).
const maxPGStatements = 256

// l7Item is a request waiting for its reply, or (PostgreSQL) a Sync that
// waits for its ReadyForQuery.
type l7Item struct {
	start    uint64 // kernel time the request was sent or read
	tid      uint32 // thread that sent or read it (client spans are linked by thread)
	cmd      uint16 // index in redisproto.CommandNames or pgproto.CommandNames
	err      uint8  // index in pgproto.ErrorClasses: an error seen before ReadyForQuery (simple query)
	simple   bool   // PostgreSQL simple query (answered by ReadyForQuery)
	prepare  bool   // PostgreSQL Parse: counted only when it fails (the query it prepares then never runs)
	sync     bool   // PostgreSQL Sync
	answered bool   // part of its reply was seen
}

// l7Conn is one connection's side (client or server) of a protocol: the
// requests in flight and, for PostgreSQL, the prepared statements.
type l7Conn struct {
	proto         uint8
	server        bool
	cgroup        uint64
	pid           uint32
	comm          [16]int8
	wl            workload.Identity
	local, remote netip.AddrPort
	tls           bool // seen in a TLS library's plaintext (bpf/tls.h)
	queue         []l7Item
	// tail is set when the last reply went on past the captured window:
	// reply-like transfers that follow are its rest, until the next
	// request (whose arrival forgets requests still queued).
	tail   bool
	stmts  map[string]uint16 // PostgreSQL statement name → command
	portal uint16            // PostgreSQL: command of the last Bind
}

// l7Key names the series a finished request updates.
type l7Key struct {
	cgroup uint64
	dest   netip.AddrPort // the server's address (remote, or local on the server side)
	proto  uint8
	server bool
	cmd    uint16
	err    uint8
}

// l7State is the HTTP reader's state for the other protocols.
type l7State struct {
	conns  map[connKey]*l7Conn
	series map[l7Key]httpSeries
	reset  time.Time
}

func newL7State() *l7State {
	return &l7State{conns: map[connKey]*l7Conn{}, series: map[l7Key]httpSeries{}}
}

func (c *l7Conn) push(h *handlers, it l7Item) {
	if len(c.queue) >= maxL7Queue {
		c.queue = c.queue[:copy(c.queue, c.queue[1:])]
		h.m.protoUnmatched.WithLabelValues(protoNames[c.proto]).Inc()
	}
	c.queue = append(c.queue, it)
}

func (c *l7Conn) pop() {
	c.queue = c.queue[:copy(c.queue, c.queue[1:])]
}

// forget drops the queued requests, counted unmatched.
func (c *l7Conn) forget(h *handlers) {
	if len(c.queue) > 0 {
		n := 0
		for _, it := range c.queue {
			if !it.sync {
				n++
			}
		}
		h.m.protoUnmatched.WithLabelValues(protoNames[c.proto]).Add(float64(n))
		c.queue = c.queue[:0]
	}
}

func (h *handlers) rejectL7(proto uint8, reason string) {
	h.m.protoRejected.WithLabelValues(protoNames[proto], reason).Inc()
}

// handleL7 handles a record of a protocol other than HTTP.
func (h *handlers) handleL7(e *httpEvent) {
	if e.Proto == protoH2 {
		h.handleH2(e)
		return
	}
	if e.Proto == protoDNS || e.Proto == protoDNSTCP || e.Proto == protoDNSMsg {
		h.handleDNS(e)
		return
	}
	st := h.http.l7
	key := connKey{e.Pid, e.Fd}
	data := e.Data[:e.Captured]
	write := e.Dir == httpWrite
	c := st.conns[key]
	if e.Family == 0 {
		// Only a reply: a server writes it, a client reads it.
		if c != nil && c.proto == e.Proto && c.server != write {
			// The side was guessed wrong: a Redis client whose first
			// transfer seen was an array reply it read (the agent
			// started while the connection was open) was taken for a
			// server reading a command. What it queued was not requests.
			c.forget(h)
			c.server, c.tail = write, false
		}
		if c == nil || c.proto != e.Proto || c.server != write {
			h.rejectL7(e.Proto, "unexpected")
			return
		}
		h.l7Replies(c, e, data)
		return
	}
	if c == nil && e.TsNs < h.attachedNS {
		// Sent while the programs were being attached: its reply may
		// have been read before the read side was attached, and then
		// every later reply on the connection would pair with the request
		// before its own (a pipelining protocol's queue never catches up).
		// Its reply, if seen, counts as unexpected.
		h.rejectL7(e.Proto, "attaching")
		return
	}
	local, remote := addrPort(e.Family, e.Saddr, e.Sport), addrPort(e.Family, e.Daddr, e.Dport)
	same := c != nil && c.proto == e.Proto && c.local == local && c.remote == remote
	if same && e.Proto == protoRedis && c.server == write {
		// A RESP array where this side reads (client) or writes (server)
		// replies: an array reply, or a pub/sub message.
		h.l7Replies(c, e, data)
		return
	}
	if !same || c.server != !write {
		if c != nil {
			c.forget(h)
			delete(st.conns, key)
		}
		if len(st.conns) >= h.cfg.MaxPendingRequests {
			for _, o := range st.conns {
				o.forget(h)
			}
			clear(st.conns)
		}
		c = &l7Conn{proto: e.Proto, server: !write, cgroup: e.CgroupId, pid: e.Pid, comm: e.Comm, local: local, remote: remote, tls: e.Tls != 0}
		c.wl = h.identity(e.CgroupId, e.TsNs)
	}
	if c.tail {
		c.forget(h) // their replies went by past the captured windows
		c.tail = false
	}
	var ok bool
	switch e.Proto {
	case protoRedis:
		_, ok = redisproto.Commands(data, func(name []byte) { c.push(h, l7Item{start: e.TsNs, tid: e.Tid, cmd: redisproto.Command(name)}) })
	case protoPostgres:
		_, _, ok = pgproto.Messages(data, pgproto.FrontendTypes, func(t byte, body []byte, _ bool) { c.pgFrontend(h, t, body, e.TsNs, e.Tid) })
	}
	if !ok {
		h.rejectL7(e.Proto, "malformed")
		if len(c.queue) == 0 && st.conns[key] == nil {
			return
		}
	}
	st.conns[key] = c
}

// pgFrontend handles one message a PostgreSQL client sent: a simple query
// is a request; in the extended protocol an Execute is, with the command
// of the statement its Bind named (from that statement's Parse), a Parse
// is one only if it fails, and a Sync waits for its ReadyForQuery.
func (c *l7Conn) pgFrontend(h *handlers, t byte, body []byte, ts uint64, tid uint32) {
	switch t {
	case 'Q':
		q, _, _ := pgproto.CString(body)
		c.push(h, l7Item{start: ts, tid: tid, cmd: pgproto.Command(q), simple: true})
	case 'P':
		name, rest, ok := pgproto.CString(body)
		if !ok {
			return
		}
		q, _, _ := pgproto.CString(rest)
		if c.stmts == nil {
			c.stmts = map[string]uint16{}
		}
		if _, known := c.stmts[string(name)]; !known && len(c.stmts) >= maxPGStatements {
			clear(c.stmts)
		}
		cmd := pgproto.Command(q)
		c.stmts[string(name)] = cmd
		c.push(h, l7Item{start: ts, tid: tid, cmd: cmd, prepare: true})
	case 'B':
		c.portal = 0
		if _, rest, ok := pgproto.CString(body); ok {
			if stmt, _, ok := pgproto.CString(rest); ok {
				c.portal = c.stmts[string(stmt)]
			}
		}
	case 'E':
		c.push(h, l7Item{start: ts, tid: tid, cmd: c.portal})
	case 'S':
		c.push(h, l7Item{start: ts, sync: true})
	}
}

// l7Replies matches the replies in one transfer to the oldest requests
// waiting on its connection.
func (h *handlers) l7Replies(c *l7Conn, e *httpEvent, data []byte) {
	if c.tail {
		return // the rest of a reply already counted
	}
	if len(c.queue) == 0 {
		h.rejectL7(c.proto, "unexpected")
		return
	}
	var cut, ok bool
	switch c.proto {
	case protoRedis:
		_, cut, ok = redisproto.Replies(data, func(r redisproto.Reply) {
			if r.Push || len(c.queue) == 0 {
				return
			}
			h.finishL7(c, &c.queue[0], redisproto.Error(r.ErrCode), e.TsNs)
			c.pop()
		})
	case protoPostgres:
		_, cut, ok = pgproto.Messages(data, pgproto.BackendTypes, func(t byte, body []byte, _ bool) { h.pgBackend(c, t, body, e.TsNs) })
		if len(c.queue) > 0 && c.queue[0].answered {
			// The reply goes on past the window: a request is counted
			// when its reply starts, so it is counted now (an error
			// further on is not seen), and the rest of its batch waits
			// for a ReadyForQuery that will not be seen.
			it := c.queue[0]
			if !it.sync && !it.prepare {
				h.finishL7(c, &it, it.err, e.TsNs)
			}
			c.pop()
			if !it.simple && !it.sync && !it.prepare {
				c.dropBatch(h)
			}
			cut = true
		}
	}
	if !ok {
		h.rejectL7(c.proto, "malformed")
		return
	}
	c.tail = cut || e.Size > uint32(e.Captured)
}

// pgBackend handles one message a PostgreSQL server sent, for the
// request at the head of the queue: a simple query is answered by
// ReadyForQuery (with an error if an ErrorResponse came first), an
// Execute by CommandComplete, EmptyQueryResponse, PortalSuspended or an
// ErrorResponse (after which the server skips the batch's other messages
// until Sync).
func (h *handlers) pgBackend(c *l7Conn, t byte, body []byte, ts uint64) {
	if len(c.queue) == 0 {
		return
	}
	it := &c.queue[0]
	it.answered = true
	switch {
	case it.sync:
		if t == 'Z' {
			c.pop()
		}
	case it.prepare:
		// ParseComplete, or an error that fails the statement's query
		// (the server skips the batch's Bind and Execute).
		switch t {
		case '1':
			c.pop()
		case 'E':
			h.finishL7(c, it, pgproto.ErrorClass(body), ts)
			c.pop()
			for len(c.queue) > 0 && !c.queue[0].sync {
				c.pop() // the same query's Execute: not a request of its own
			}
		}
	case it.simple:
		if t == 'E' && it.err == 0 {
			it.err = pgproto.ErrorClass(body)
		}
		if t == 'Z' {
			h.finishL7(c, it, it.err, ts)
			c.pop()
		}
	default:
		switch t {
		case 'C', 'I', 's':
			h.finishL7(c, it, 0, ts)
			c.pop()
		case 'E':
			h.finishL7(c, it, pgproto.ErrorClass(body), ts)
			c.pop()
			c.dropExecutes(h)
		}
	}
}

// dropExecutes forgets the Executes queued before the next Sync: after an
// error the server skips them.
func (c *l7Conn) dropExecutes(h *handlers) {
	for len(c.queue) > 0 && !c.queue[0].sync {
		c.pop()
		h.m.protoUnmatched.WithLabelValues(protoNames[c.proto]).Inc()
	}
}

// dropBatch forgets the rest of a batch up to and including its Sync.
func (c *l7Conn) dropBatch(h *handlers) {
	c.dropExecutes(h)
	if len(c.queue) > 0 {
		c.pop()
	}
}

// finishL7 counts request it of connection c, answered at endNS with
// error errIdx (0: none).
func (h *handlers) finishL7(c *l7Conn, it *l7Item, errIdx uint8, endNS uint64) {
	st := h.http.l7
	if time.Since(st.reset) > seriesCacheTTL {
		clear(st.series)
		st.reset = time.Now()
	}
	dest := serverAddr(c.server, c.local, c.remote)
	k := l7Key{cgroup: c.cgroup, dest: dest, proto: c.proto, server: c.server, cmd: it.cmd, err: errIdx}
	s, ok := st.series[k]
	if !ok {
		if len(st.series) >= maxCachedSeries {
			clear(st.series)
		}
		kind := "client"
		if c.server {
			kind = "server"
		}
		var cmd, errName string
		var reqs *prometheus.CounterVec
		var dur *prometheus.HistogramVec
		var cp *capper
		switch c.proto {
		case protoRedis:
			cmd, errName = redisproto.CommandNames[it.cmd], redisproto.ErrorNames[errIdx]
			reqs, dur, cp = h.m.redisRequests, h.m.redisDuration, h.m.redisCap
		default:
			cmd, errName = pgproto.CommandNames[it.cmd], pgproto.ErrorClasses[errIdx]
			reqs, dur, cp = h.m.pgRequests, h.m.pgDuration, h.m.pgCap
		}
		lv := cp.labelsWith(c.wl, destination(dest), cmd, cmd, kind, errName)
		s = httpSeries{reqs.WithLabelValues(lv...), dur.WithLabelValues(lv...)}
		if resolved(c.wl) {
			st.series[k] = s
		}
	}
	d := 0.0
	if endNS > it.start {
		d = float64(endNS-it.start) / 1e9
	}
	s.requests.Inc()
	s.duration.Observe(d)
	h.l7Span(c, it, errIdx, endNS)
}

// l7Span exports the span of a finished Redis or PostgreSQL request when
// the sampling rules of HTTP say so (a client request made by a thread
// serving one HTTP request joins its trace; otherwise a new trace, by
// ratio and rate) or it failed; no traceparent travels in these protocols.
func (h *handlers) l7Span(c *l7Conn, it *l7Item, errIdx uint8, endNS uint64) {
	if !h.spans.wanted() {
		h.m.spansUnexported.Inc()
		return
	}
	p := pendingRequest{server: c.server, start: h.clock.time(it.start), wl: c.wl, cgroup: c.cgroup, pid: c.pid, tid: it.tid,
		comm: c.comm, local: c.local, remote: c.remote, tls: c.tls}
	h.decide(&p, nil, endNS)
	if !p.sampled && errIdx == 0 {
		h.m.spansSampledOut.Inc()
		return
	}
	var db dbSpan
	switch c.proto {
	case protoRedis:
		db = dbSpan{system: "redis", operation: redisproto.CommandNames[it.cmd]}
		if errIdx != 0 {
			db.errType = redisproto.ErrorNames[errIdx]
		}
	default:
		db = dbSpan{system: "postgresql", operation: pgproto.CommandNames[it.cmd]}
		if errIdx != 0 {
			db.errType = pgproto.ErrorClasses[errIdx]
		}
	}
	h.spans.addDB(&p, db, h.clock.time(endNS))
}
