//go:build linux

package ebpf

import (
	"net/netip"
	"time"

	"github.com/vigil-agent/vigil/collectors/ebpf/dnsproto"
	"github.com/vigil-agent/vigil/collectors/workload"
)

// DNS, from the records the kernel sends on the HTTP ring with proto
// protoDNS (a UDP datagram on a DNS port, bpf/dns.h), protoDNSTCP (a TCP
// transfer that starts like a DNS message after its length) or
// protoDNSMsg (one that starts like a DNS message: written or read apart
// from its length; vigil_dns_tcp). A query waits for the answer with the same DNS ID
// on the same process and descriptor; one still unanswered after
// Config.DNSTimeout is counted with rcode "timeout" (UDP; over TCP it is
// counted unmatched, since a long answer is not seen, see docs/ebpf.md).

// dnsRCodes are the rcode label values: the header's response codes by
// value up to REFUSED, then other, then timeout (no answer seen).
var dnsRCodes = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other", "timeout"}

const (
	dnsRCodeOther   = 6
	dnsRCodeTimeout = 7
)

// dnsRCode is the index in dnsRCodes of a header response code.
func dnsRCode(c uint8) uint8 {
	if c <= 5 {
		return c
	}
	return dnsRCodeOther
}

// dnsKey names a query: its process, descriptor and DNS ID.
type dnsKey struct {
	pid, fd uint32
	id      uint16
}

// dnsQuery is a query waiting for its answer.
type dnsQuery struct {
	start         uint64 // kernel time it was sent or read
	at            time.Time
	tid           uint32
	qtype         uint8 // index in dnsproto.QTypeNames
	server, tcp   bool
	cgroup        uint64
	pid           uint32
	comm          [16]int8
	wl            workload.Identity
	local, remote netip.AddrPort
}

// dnsSeriesKey names the series a finished query updates.
type dnsSeriesKey struct {
	cgroup uint64
	dest   netip.AddrPort // the server's address (remote, or local on the server side)
	server bool
	qtype  uint8
	rcode  uint8
}

// dnsState is the HTTP reader's DNS state: the queries in flight (at most
// Config.MaxPendingRequests) and the cached series.
type dnsState struct {
	pending map[dnsKey]*dnsQuery
	series  map[dnsSeriesKey]httpSeries
	reset   time.Time
}

func newDNSState() *dnsState {
	return &dnsState{pending: map[dnsKey]*dnsQuery{}, series: map[dnsSeriesKey]httpSeries{}}
}

// handleDNS handles a DNS record: a query starts a request (a client
// writes it, a server reads it), an answer in the other direction on the
// same process and descriptor with the same ID finishes it.
func (h *handlers) handleDNS(e *httpEvent) {
	st := h.http.dns
	tcp := e.Proto != protoDNS
	m, ok := dnsproto.Parse(e.Data[:e.Captured], e.Proto == protoDNSTCP)
	if !ok {
		h.m.protoRejected.WithLabelValues("dns", "malformed").Inc()
		return
	}
	write := e.Dir == httpWrite
	key := dnsKey{e.Pid, e.Fd, m.ID}
	if m.Response {
		q := st.pending[key]
		if q == nil || q.server != write {
			h.m.protoRejected.WithLabelValues("dns", "unexpected").Inc()
			return
		}
		delete(st.pending, key)
		h.finishDNS(q, dnsRCode(m.RCode), e.TsNs)
		return
	}
	if e.Family == 0 {
		return // a query always carries its socket
	}
	if old := st.pending[key]; old != nil && old.server == !write {
		// The same query again (a client retrying after its own timeout):
		// the first one was not answered.
		delete(st.pending, key)
		h.expireDNS(old, e.TsNs)
	}
	if len(st.pending) >= h.cfg.MaxPendingRequests {
		h.m.protoUnmatched.WithLabelValues("dns").Add(float64(len(st.pending)))
		clear(st.pending)
	}
	q := &dnsQuery{start: e.TsNs, at: h.clock.time(e.TsNs), tid: e.Tid, qtype: dnsproto.QType(m.QType), server: !write, tcp: tcp,
		cgroup: e.CgroupId, pid: e.Pid, comm: e.Comm,
		local: addrPort(e.Family, e.Saddr, e.Sport), remote: addrPort(e.Family, e.Daddr, e.Dport)}
	q.wl = h.identity(e.CgroupId, e.TsNs)
	st.pending[key] = q
}

// expireDNS counts a query that got no answer: a UDP query as rcode
// timeout (the resolver's failure), a TCP one as unmatched (its answer may
// have been one the kernel does not see).
func (h *handlers) expireDNS(q *dnsQuery, nowNS uint64) {
	if q.tcp {
		h.m.protoUnmatched.WithLabelValues("dns").Inc()
		return
	}
	h.finishDNS(q, dnsRCodeTimeout, nowNS)
}

// sweepDNS expires the queries older than Config.DNSTimeout; called with
// sweepHTTP, once per evidence interval.
func (h *handlers) sweepDNS(now time.Time) {
	st := h.http.dns
	cut := now.Add(-h.cfg.DNSTimeout)
	for k, q := range st.pending {
		if q.at.Before(cut) {
			delete(st.pending, k)
			h.expireDNS(q, q.start+uint64(now.Sub(q.at)))
		}
	}
}

// finishDNS counts query q, answered at endNS with rcode (an index in
// dnsRCodes), and exports its span under the sampling rules.
func (h *handlers) finishDNS(q *dnsQuery, rcode uint8, endNS uint64) {
	st := h.http.dns
	if time.Since(st.reset) > seriesCacheTTL {
		clear(st.series)
		st.reset = time.Now()
	}
	dest := serverAddr(q.server, q.local, q.remote)
	k := dnsSeriesKey{cgroup: q.cgroup, dest: dest, server: q.server, qtype: q.qtype, rcode: rcode}
	s, ok := st.series[k]
	if !ok {
		if len(st.series) >= maxCachedSeries {
			clear(st.series)
		}
		kind := "client"
		if q.server {
			kind = "server"
		}
		failed := "true"
		if rcode == 0 {
			failed = "false"
		}
		lv := h.m.dnsCap.labels(q.wl, destination(dest), kind, dnsproto.QTypeNames[q.qtype], dnsRCodes[rcode], failed)
		s = httpSeries{h.m.dnsRequests.WithLabelValues(lv...), h.m.dnsDuration.WithLabelValues(lv...)}
		if resolved(q.wl) {
			st.series[k] = s
		}
	}
	d := 0.0
	if endNS > q.start {
		d = float64(endNS-q.start) / 1e9
	}
	s.requests.Inc()
	s.duration.Observe(d)
	h.dnsSpan(q, rcode, endNS)
}

// dnsSpan exports the span of a finished query when the sampling rules of
// HTTP say so (a query made by a thread serving one HTTP request joins its
// trace; otherwise a new trace, by ratio and rate) or it failed.
func (h *handlers) dnsSpan(q *dnsQuery, rcode uint8, endNS uint64) {
	if !h.spans.wanted() {
		h.m.spansUnexported.Inc()
		return
	}
	p := pendingRequest{server: q.server, start: q.at, wl: q.wl, cgroup: q.cgroup, pid: q.pid, tid: q.tid,
		comm: q.comm, local: q.local, remote: q.remote}
	h.decide(&p, nil, endNS)
	if !p.sampled && rcode == 0 {
		h.m.spansSampledOut.Inc()
		return
	}
	transport := "udp"
	if q.tcp {
		transport = "tcp"
	}
	h.spans.addDB(&p, dbSpan{system: "dns", operation: dnsproto.QTypeNames[q.qtype], dnsRCode: dnsRCodes[rcode], transport: transport},
		h.clock.time(endNS))
}
