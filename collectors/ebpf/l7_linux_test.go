//go:build linux

package ebpf

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// sampleL7 is a record of protocol proto as the kernel sends it: a
// request-like one with the socket (family set), a reply-only one
// without.
func sampleL7(proto, dir uint8, request bool, ts uint64, payload string) httpEvent {
	e := sampleHTTP(dir, payload)
	e.Proto, e.TsNs = proto, ts
	if !request {
		e.Family, e.Sport, e.Dport, e.Saddr, e.Daddr = 0, 0, 0, [16]uint8{}, [16]uint8{}
	}
	return e
}

// The destination label values of sampleHTTP's socket: its remote
// address (a client's server) and its local one (a server's listening
// address).
const (
	sampleRemote = "127.0.0.1:40000"
	sampleLocal  = "127.0.0.1:8080"
)

func pgMsg(t byte, body string) string {
	return string(t) + string(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))) + body
}

// Requests and replies pair in order per connection; what is not the
// protocol, or answers nothing, is counted apart.
func TestL7Pairing(t *testing.T) {
	h := newTestHandlers()
	send := func(e httpEvent) { h.handleHTTP(encode(t, e)) }
	// A client pipelines three commands; the second fails.
	send(sampleL7(protoRedis, httpWrite, true, 10, "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n"))
	send(sampleL7(protoRedis, httpRead, false, 30, "$1\r\nx\r\n-WRONGTYPE Operation\r\n+PONG\r\n"))
	// A long reply: its first transfer counts, the rest is not a reply.
	send(sampleL7(protoRedis, httpWrite, true, 40, "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n"))
	big := sampleL7(protoRedis, httpRead, false, 50, "$5000\r\nxxxx")
	big.Size = 5000
	send(big)
	send(sampleL7(protoRedis, httpRead, false, 51, ":1\r\n")) // the value's rest, which happens to look like RESP
	// Not Redis, and a reply nothing waits for (another descriptor).
	send(sampleL7(protoRedis, httpWrite, true, 60, "*1 is not RESP"))
	stray := sampleL7(protoRedis, httpRead, false, 61, "+OK\r\n")
	stray.Fd = 99
	send(stray)

	// A client connection first seen reading an array reply is taken for
	// a server reading a command; its first non-array reply read puts it
	// right, and its next command counts on the client side.
	late := func(dir uint8, request bool, ts uint64, payload string) {
		e := sampleL7(protoRedis, dir, request, ts, payload)
		e.Fd = 5
		send(e)
	}
	late(httpRead, true, 70, "*2\r\n$1\r\na\r\n$1\r\nb\r\n") // LRANGE's reply, its command unseen
	late(httpRead, false, 71, ":1\r\n")                      // the next reply: a server never reads one
	late(httpWrite, true, 72, "*1\r\n$4\r\nPING\r\n")
	late(httpRead, false, 73, "+PONG\r\n")

	m := h.m
	for _, c := range []struct {
		cmd, err string
		want     float64
	}{{"GET", "none", 2}, {"INCR", "WRONGTYPE", 1}, {"PING", "none", 2}} {
		if got := testutil.ToFloat64(m.redisRequests.WithLabelValues(append(make([]string, len(workload.LabelNames)), sampleRemote, c.cmd, "client", c.err)...)); got != c.want {
			t.Errorf("redis %s %s = %v, want %v", c.cmd, c.err, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.protoRejected.WithLabelValues("redis", "malformed")); got != 1 {
		t.Errorf("malformed = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.protoRejected.WithLabelValues("redis", "unexpected")); got != 2 {
		t.Errorf("unexpected = %v, want 2 (the stray reply, the reply that put the side right)", got)
	}
	if got := testutil.ToFloat64(m.redisRequests.WithLabelValues(append(make([]string, len(workload.LabelNames)), sampleLocal, "other", "server", "none")...)); got != 0 {
		t.Errorf("server-side commands = %v, want 0", got)
	}

	// PostgreSQL, extended protocol: two Executes in one batch, the first
	// fails, so the server skips the second (counted unmatched).
	h = newTestHandlers()
	send = func(e httpEvent) { h.handleHTTP(encode(t, e)) }
	batch := pgMsg('P', "s\x00INSERT INTO t VALUES ($1)\x00\x00\x00") + pgMsg('B', "\x00s\x00\x00\x00\x00\x00\x00\x00") +
		pgMsg('E', "\x00\x00\x00\x00\x00") + pgMsg('B', "\x00s\x00\x00\x00\x00\x00\x00\x00") + pgMsg('E', "\x00\x00\x00\x00\x00") + pgMsg('S', "")
	send(sampleL7(protoPostgres, httpWrite, true, 10, batch))
	send(sampleL7(protoPostgres, httpRead, false, 20, pgMsg('1', "")+pgMsg('2', "")+pgMsg('E', "SERROR\x00C23505\x00\x00")+pgMsg('Z', "I")))
	// Then a simple query whose result goes on past the window.
	send(sampleL7(protoPostgres, httpWrite, true, 30, pgMsg('Q', "select * from t\x00")))
	res := sampleL7(protoPostgres, httpRead, false, 40, pgMsg('T', "\x00\x01a\x00")+pgMsg('D', "row"))
	res.Size = 100000
	send(res)
	send(sampleL7(protoPostgres, httpRead, false, 41, pgMsg('D', "row")+pgMsg('C', "SELECT 2\x00")+pgMsg('Z', "I")))
	m = h.m
	for _, c := range []struct {
		cmd, err string
		want     float64
	}{{"INSERT", "23", 1}, {"INSERT", "none", 0}, {"SELECT", "none", 1}} {
		if got := testutil.ToFloat64(m.pgRequests.WithLabelValues(append(make([]string, len(workload.LabelNames)), sampleRemote, c.cmd, "client", c.err)...)); got != c.want {
			t.Errorf("postgres %s %s = %v, want %v", c.cmd, c.err, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.protoUnmatched.WithLabelValues("postgres")); got != 1 {
		t.Errorf("postgres unmatched = %v, want 1 (the skipped Execute)", got)
	}
}

// Any sequence of records, valid, cut or random, leaves the state bounded
// and never panics.
func TestL7Robust(t *testing.T) {
	h := newTestHandlers()
	h.cfg.MaxPendingRequests = 8
	pieces := []string{
		"*2\r\n$3\r\nGET\r\n$1\r\na\r\n", "+OK\r\n", "-ERR x\r\n", "$5\r\nhello\r\n", "*1\r\n", ">2\r\n+a\r\n+b\r\n", "%1\r\n",
		pgMsg('Q', "SELECT 1\x00"), pgMsg('P', "s\x00SELECT 1\x00\x00\x00"), pgMsg('B', "\x00s\x00"), pgMsg('E', "\x00\x00\x00\x00\x00"),
		pgMsg('S', ""), pgMsg('Z', "I"), pgMsg('C', "SELECT 1\x00"), pgMsg('1', ""), pgMsg('E', "SERROR\x00C42601\x00\x00"),
		"\x00\xff\r\n", "*", "Q\x00",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		var payload []byte
		for range r.IntN(6) {
			payload = append(payload, pieces[r.IntN(len(pieces))]...)
		}
		if r.IntN(4) == 0 {
			payload = payload[:r.IntN(len(payload)+1)]
		}
		if r.IntN(8) == 0 {
			for j := range payload {
				if r.IntN(10) == 0 {
					payload[j] = byte(r.Uint32())
				}
			}
		}
		e := sampleL7(uint8(1+r.IntN(2)), uint8(r.IntN(2)), r.IntN(2) == 0, uint64(i), string(payload[:min(len(payload), 511)]))
		e.Fd = uint32(r.IntN(12))
		e.Size += uint32(r.IntN(2) * 1000)
		h.handleHTTP(encode(t, e))
		for _, c := range h.http.l7.conns {
			if len(c.queue) > maxL7Queue {
				t.Fatalf("queue of %d", len(c.queue))
			}
		}
		if n := len(h.http.l7.conns); n > h.cfg.MaxPendingRequests {
			t.Fatalf("%d connections followed, max %d", n, h.cfg.MaxPendingRequests)
		}
	}
}

// A Redis command sent while the programs were being attached, whose
// reply went by before the read side was attached, is not queued: the
// connection's next command is timed from itself, not from the one
// before it.
func TestL7RequestWhileAttaching(t *testing.T) {
	h := newTestHandlers()
	h.attachedNS = 100
	send := func(e httpEvent) { h.handleHTTP(encode(t, e)) }
	get := "*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
	send(sampleL7(protoRedis, httpWrite, true, 90, get)) // its reply not seen
	send(sampleL7(protoRedis, httpWrite, true, 1_000_000_000, get))
	send(sampleL7(protoRedis, httpRead, false, 1_002_000_000, "$1\r\nx\r\n"))
	if got := testutil.ToFloat64(h.m.protoRejected.WithLabelValues("redis", "attaching")); got != 1 {
		t.Errorf("attaching = %v, want 1", got)
	}
	labels := append(make([]string, len(workload.LabelNames)), sampleRemote, "GET", "client", "none")
	if got := testutil.ToFloat64(h.m.redisRequests.WithLabelValues(labels...)); got != 1 {
		t.Errorf("GET = %v, want 1", got)
	}
	var m dto.Metric
	if err := h.m.redisDuration.WithLabelValues(labels...).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleSum(); got < 0.0019 || got > 0.0021 {
		t.Errorf("GET timed %v s, want 0.002 (from its own send, not the one before)", got)
	}
}

// Hostile input for the destination label: a client that talks to more
// Redis and PostgreSQL servers and DNS resolvers than max_series allows gets a series
// for each of the first ones; every later request goes to the overflow
// series (no workload, destination "overflow") and is counted in
// vigil_ebpf_series_overflow_total.
func TestDestinationCap(t *testing.T) {
	const limit, servers = 3, 50
	cfg := NewConfig()
	cfg.MaxSeries = limit
	h := samplingHandlers(cfg)
	send := func(e httpEvent) { h.handleHTTP(encode(t, e)) }
	now := monotonicNS() // a periodic sweep would time out older queries
	for i := range servers {
		server := [16]uint8{10, 0, byte(i >> 8), byte(i)}
		req := sampleL7(protoRedis, httpWrite, true, now+uint64(10*i+1), "*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
		req.Fd, req.Daddr, req.Dport = uint32(100+i), server, 6379
		send(req)
		reply := sampleL7(protoRedis, httpRead, false, now+uint64(10*i+2), "$1\r\nx\r\n")
		reply.Fd = req.Fd
		send(reply)

		pq := sampleL7(protoPostgres, httpWrite, true, now+uint64(10*i+5), pgMsg('Q', "select 1\x00"))
		pq.Fd, pq.Daddr, pq.Dport = uint32(2000+i), server, 5432
		send(pq)
		pr := sampleL7(protoPostgres, httpRead, false, now+uint64(10*i+6), pgMsg('C', "SELECT 1\x00")+pgMsg('Z', "I"))
		pr.Fd = pq.Fd
		send(pr)

		q := sampleL7(protoDNS, httpWrite, true, now+uint64(10*i+3), dnsMsg(t, uint16(i), dnsmessage.TypeA, -1))
		q.Fd, q.Daddr, q.Dport = uint32(1000+i), server, 53
		send(q)
		a := sampleL7(protoDNS, httpRead, false, now+uint64(10*i+4), dnsMsg(t, uint16(i), dnsmessage.TypeA, 0))
		a.Fd = q.Fd
		send(a)
	}
	noWorkload := make([]string, len(workload.LabelNames))
	for _, c := range []struct {
		family string
		vec    *prometheus.CounterVec
		rest   []string
	}{
		{"redis", h.m.redisRequests, []string{"GET", "client", "none"}},
		{"postgres", h.m.pgRequests, []string{"SELECT", "client", "none"}},
		{"dns", h.m.dnsRequests, []string{"client", "A", "NOERROR", "false"}},
	} {
		if got := testutil.CollectAndCount(c.vec); got != limit+1 {
			t.Errorf("%s: %d series, want %d and the overflow series", c.family, got, limit)
		}
		for i := range limit {
			dest := fmt.Sprintf("10.0.0.%d:%s", i, map[string]string{"redis": "6379", "postgres": "5432", "dns": "53"}[c.family])
			if got := testutil.ToFloat64(c.vec.WithLabelValues(append(append([]string{}, noWorkload...), append([]string{dest}, c.rest...)...)...)); got != 1 {
				t.Errorf("%s{destination=%q} = %v, want 1", c.family, dest, got)
			}
		}
		if got := testutil.ToFloat64(c.vec.WithLabelValues(append(append([]string{}, noWorkload...), append([]string{overflowValue}, c.rest...)...)...)); got != servers-limit {
			t.Errorf("%s{destination=overflow} = %v, want %d", c.family, got, servers-limit)
		}
		if got := testutil.ToFloat64(h.m.seriesOverflow.WithLabelValues(c.family)); got != servers-limit {
			t.Errorf("vigil_ebpf_series_overflow_total{family=%s} = %v, want %d", c.family, got, servers-limit)
		}
	}
}
