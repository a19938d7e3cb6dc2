//go:build linux

package ebpf

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/dns/dnsmessage"
)

// dnsMsg is a DNS query (or, with rcode >= 0, its answer) for name and
// qtype with ID id, as a resolver writes it.
func dnsMsg(t *testing.T, id uint16, qtype dnsmessage.Type, rcode int) string {
	t.Helper()
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("www.vigil.test."), Type: qtype, Class: dnsmessage.ClassINET}}}
	if rcode >= 0 {
		m.Response, m.RCode = true, dnsmessage.RCode(rcode)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Queries pair with answers by process, descriptor and ID; a query with
// no answer is a timeout after dns_timeout (over UDP) or unmatched (over
// TCP); a retry with the same ID counts the first as a timeout; answers
// nothing waits for, and bytes that are not DNS, are rejected.
func TestDNSPairing(t *testing.T) {
	cfg := NewConfig()
	cfg.DNSTimeout = time.Second
	h := samplingHandlers(cfg)
	send := func(e httpEvent) { h.handleHTTP(encode(t, e)) }
	count := func(kind, qtype, rcode string) float64 {
		failed := "true"
		if rcode == "NOERROR" {
			failed = "false"
		}
		dest := sampleRemote // the server a client sent to; a server's own (listening) address
		if kind == "server" {
			dest = sampleLocal
		}
		return testutil.ToFloat64(h.m.dnsRequests.WithLabelValues(append(make([]string, len(labelNames())), dest, kind, qtype, rcode, failed)...))
	}
	// glibc: A and AAAA on one socket, answered in the other order.
	send(sampleL7(protoDNS, httpWrite, true, 10, dnsMsg(t, 1, dnsmessage.TypeA, -1)))
	send(sampleL7(protoDNS, httpWrite, true, 11, dnsMsg(t, 2, dnsmessage.TypeAAAA, -1)))
	send(sampleL7(protoDNS, httpRead, false, 20, dnsMsg(t, 2, dnsmessage.TypeAAAA, 0)))
	send(sampleL7(protoDNS, httpRead, false, 21, dnsMsg(t, 1, dnsmessage.TypeA, 3)))
	// A server reads a query and answers REFUSED.
	srv := sampleL7(protoDNS, httpRead, true, 30, dnsMsg(t, 3, dnsmessage.TypeMX, -1))
	srv.Fd = 9
	send(srv)
	ans := sampleL7(protoDNS, httpWrite, false, 31, dnsMsg(t, 3, dnsmessage.TypeMX, 5))
	ans.Fd = 9
	send(ans)
	// A retry with the same ID: the first query timed out.
	send(sampleL7(protoDNS, httpWrite, true, 40, dnsMsg(t, 4, dnsmessage.TypeTXT, -1)))
	send(sampleL7(protoDNS, httpWrite, true, 41, dnsMsg(t, 4, dnsmessage.TypeTXT, -1)))
	send(sampleL7(protoDNS, httpRead, false, 42, dnsMsg(t, 4, dnsmessage.TypeTXT, 2)))
	// An answer nobody asked for (another ID), an answer in the wrong
	// direction (a client writing it), and bytes that are not DNS.
	send(sampleL7(protoDNS, httpRead, false, 50, dnsMsg(t, 99, dnsmessage.TypeA, 0)))
	send(sampleL7(protoDNS, httpWrite, true, 51, dnsMsg(t, 5, dnsmessage.TypeA, -1)))
	send(sampleL7(protoDNS, httpWrite, false, 52, dnsMsg(t, 5, dnsmessage.TypeA, 0)))
	send(sampleL7(protoDNS, httpWrite, true, 53, "\x00\x07\x00\x00\x00\x01 not a DNS message"))
	// Over TCP: with its length (Go's query), apart from it (its answer).
	q := dnsMsg(t, 6, dnsmessage.TypeSRV, -1)
	tcpQ := sampleL7(protoDNSTCP, httpWrite, true, 60, string([]byte{0, byte(len(q))})+q)
	tcpQ.Fd = 11
	send(tcpQ)
	tcpA := sampleL7(protoDNSMsg, httpRead, false, 61, dnsMsg(t, 6, dnsmessage.TypeSRV, 0))
	tcpA.Fd = 11
	send(tcpA)
	tcpQ.TsNs, tcpQ.Data[3] = 62, 7 // ID 7: never answered
	send(tcpQ)

	for _, c := range []struct {
		kind, qtype, rcode string
		want               float64
	}{
		{"client", "A", "NXDOMAIN", 1},
		{"client", "AAAA", "NOERROR", 1},
		{"server", "MX", "REFUSED", 1},
		{"client", "TXT", "timeout", 1},
		{"client", "TXT", "SERVFAIL", 1},
		{"client", "SRV", "NOERROR", 1},
		{"client", "A", "timeout", 0},
	} {
		if got := count(c.kind, c.qtype, c.rcode); got != c.want {
			t.Errorf("vigil_dns_requests_total{kind=%s,qtype=%s,rcode=%s} = %v, want %v", c.kind, c.qtype, c.rcode, got, c.want)
		}
	}
	for reason, want := range map[string]float64{"unexpected": 2, "malformed": 1} {
		if got := testutil.ToFloat64(h.m.protoRejected.WithLabelValues("dns", reason)); got != want {
			t.Errorf("vigil_ebpf_protocol_rejected_total{protocol=dns,reason=%s} = %v, want %v", reason, got, want)
		}
	}
	// After dns_timeout, the UDP query of ID 5 times out and the TCP one
	// of ID 7 is unmatched.
	h.sweepDNS(time.Now().Add(2 * time.Second))
	if got := count("client", "A", "timeout"); got != 1 {
		t.Errorf("vigil_dns_requests_total{rcode=timeout,qtype=A} after the sweep = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.m.protoUnmatched.WithLabelValues("dns")); got != 1 {
		t.Errorf("vigil_ebpf_protocol_unmatched_total{protocol=dns} = %v, want 1", got)
	}
	if n := len(h.http.dns.pending); n != 0 {
		t.Errorf("%d queries still pending after the sweep", n)
	}
}
