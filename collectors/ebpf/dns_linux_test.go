//go:build linux

package ebpf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestDNS runs Debian's NSD (an authoritative server for testenv.DNSZone)
// and three real clients, each in a cgroup of its own: dig (BIND's
// resolver library: a connected UDP socket, sendmmsg and recvmsg), Go's
// resolver (net.Resolver with PreferGo: connected UDP sockets, write and
// read) and glibc's (getent ahosts: A and AAAA together with one sendmmsg,
// recvfrom), with lookups that succeed, fail (NXDOMAIN; REFUSED for a zone
// the server does not serve) and time out (a UDP port that reads and never
// answers). Counts are checked exactly on the client side against what
// each client sent, and on the server side against the sum. DNS is seen
// on the socket hook only (docs/ebpf.md).
func TestDNS(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs, NSD on port 53, getent in a mount namespace")
	if !kernelHasSocketTracepoints() {
		t.Skip("the kernel lacks sock/sock_send_length and sock/sock_recv_length (Linux 6.4+)")
	}
	srv := testenv.StartDNSWith(t, testenv.DNSOptions{Port53: true}) // before the collector: its readiness query is not counted
	dig := testenv.Binary(t, "dig")
	getent := testenv.Binary(t, "getent")
	// A server that drops every query: a bound UDP socket nobody reads.
	hole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	holePort := hole.LocalAddr().(*net.UDPAddr).Port

	cfg := spansConfig("socket")
	cfg.DNSPorts = []int{srv.Port, holePort}
	// Longer than any answer takes on a loaded machine (a late answer
	// would count as a timeout), shorter than the test's patience.
	cfg.DNSTimeout = 3 * time.Second
	env := startCollector(t, cfg)
	requireHTTPHook(t, env, "socket")
	port := fmt.Sprint(srv.Port)

	// dig: one query each (+tries=1), UDP.
	const digUnit = "vigil-ebpf-test-dns-dig.service"
	digCg := testCgroup(t, digUnit)
	env.knownCgroup(t, digCg)
	for _, args := range [][]string{
		{"-p", port, "@127.0.0.1", "www.vigil.test.", "A"},
		{"-p", port, "@127.0.0.1", "www.vigil.test.", "AAAA"},
		{"-p", port, "@127.0.0.1", "vigil.test.", "MX"},
		{"-p", port, "@127.0.0.1", "vigil.test.", "TXT"},
		{"-p", port, "@127.0.0.1", "nope.vigil.test.", "A"},                // NXDOMAIN
		{"-p", port, "@127.0.0.1", "www.example.com.", "A"},                // REFUSED
		{"-p", fmt.Sprint(holePort), "@127.0.0.1", "www.vigil.test.", "A"}, // no answer
	} {
		wait := "+time=10" // generous: a late answer would make dig retry
		if args[1] != port {
			wait = "+time=1" // the hole: dig gives up after a second
		}
		cmd := inCgroup(digCg, append([]string{dig, "+tries=1", wait, "+nocookie", "+noedns"}, args...)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 9 && args[1] != port) { // 9: no reply, expected from the hole only
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		t.Logf("dig %v: %s", args[2:], digStatus(out))
	}

	// Go's resolver, every query counted by the helper as it writes it.
	const goUnit = "vigil-ebpf-test-dns-go.service"
	goCg := testCgroup(t, goUnit)
	env.knownCgroup(t, goCg)
	goSent := runDNSGoClient(t, goCg, fmt.Sprintf("udp,%s,127.0.0.1:%d", srv.Addr, holePort))

	// Over TCP: dig (the length written apart from the query with writev,
	// the answer read with its length) and Go's resolver (query written
	// with its length, the answer's length read first); NSD reads the
	// length first and writes the answer apart from it.
	const tcpUnit = "vigil-ebpf-test-dns-tcp.service"
	tcpCg := testCgroup(t, tcpUnit)
	env.knownCgroup(t, tcpCg)
	for _, args := range [][]string{
		{"-p", port, "@127.0.0.1", "www.vigil.test.", "A"},
		{"-p", port, "@127.0.0.1", "nope.vigil.test.", "A"}, // NXDOMAIN
	} {
		out, err := inCgroup(tcpCg, append([]string{dig, "+tcp", "+tries=1", "+time=10", "+nocookie", "+noedns"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig +tcp %v: %v\n%s", args, err, out)
		}
		t.Logf("dig +tcp %v: %s", args[2:], digStatus(out))
	}
	const goTCPUnit = "vigil-ebpf-test-dns-go-tcp.service"
	goTCPCg := testCgroup(t, goTCPUnit)
	env.knownCgroup(t, goTCPCg)
	goTCPSent := runDNSGoClient(t, goTCPCg, "tcp,"+srv.Addr)

	// glibc's resolver through getent, with a resolv.conf of its own (in
	// a mount namespace) naming the server on port 53.
	const glibcUnit = "vigil-ebpf-test-dns-glibc.service"
	glibcCg := testCgroup(t, glibcUnit)
	env.knownCgroup(t, glibcCg)
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+testenv.DNSPort53Addr+"\noptions timeout:10 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"www.vigil.test.", "nope.vigil.test."} {
		cmd := inCgroup(glibcCg, "unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /etc/resolv.conf && exec "$@"`, resolv, getent, "ahosts", name)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2 && strings.HasPrefix(name, "nope")) { // 2: not found
			t.Fatalf("getent ahosts %s: %v\n%s", name, err, out)
		}
		t.Logf("getent ahosts %s: %s", name, strings.Join(strings.Fields(string(out)), " "))
	}

	type series map[string]string
	// The destination is the address each client dialled: NSD's
	// (srv.Addr), the hole's for the queries that time out, and
	// testenv.DNSPort53Addr port 53 for glibc's.
	holeAddr := fmt.Sprintf("127.0.0.1:%d", holePort)
	port53 := testenv.DNSPort53Addr + ":53"
	client := func(unit, qtype, rcode string) series {
		failed := "true"
		if rcode == "NOERROR" {
			failed = "false"
		}
		dest := srv.Addr
		switch {
		case rcode == "timeout":
			dest = holeAddr
		case unit == glibcUnit:
			dest = port53
		}
		return series{"unit": unit, "kind": "client", "destination": dest, "qtype": qtype, "rcode": rcode, "failed": failed}
	}
	checks := []struct {
		labels series
		want   float64
	}{
		{client(digUnit, "A", "NOERROR"), 1},
		{client(digUnit, "AAAA", "NOERROR"), 1},
		{client(digUnit, "MX", "NOERROR"), 1},
		{client(digUnit, "TXT", "NOERROR"), 1},
		{client(digUnit, "A", "NXDOMAIN"), 1},
		{client(digUnit, "A", "REFUSED"), 1},
		{client(digUnit, "A", "timeout"), 1},
		{client(glibcUnit, "A", "NOERROR"), 1},
		{client(glibcUnit, "AAAA", "NOERROR"), 1},
		{client(glibcUnit, "A", "NXDOMAIN"), 1},
		{client(glibcUnit, "AAAA", "NXDOMAIN"), 1},
	}
	checks = append(checks, []struct {
		labels series
		want   float64
	}{
		{client(tcpUnit, "A", "NOERROR"), 1},
		{client(tcpUnit, "A", "NXDOMAIN"), 1},
	}...)
	var toServer float64 = 6 + 4 + 2 // dig's answered queries, glibc's, dig's over TCP
	for unit, sent := range map[string]map[string]float64{goUnit: goSent, goTCPUnit: goTCPSent} {
		for k, n := range sent {
			qtype, rcode, _ := strings.Cut(k, " ")
			checks = append(checks, struct {
				labels series
				want   float64
			}{client(unit, qtype, rcode), n})
			if rcode != "timeout" {
				toServer += n
			}
		}
	}
	for _, c := range checks {
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_dns_requests_total%v", c.labels), func() bool {
			return env.value(t, "vigil_dns_requests_total", c.labels) >= c.want
		})
	}
	// NSD runs in the test's own cgroup: its workload labels name the
	// server's series (another DNS server on the node would not count).
	server := ownWorkload(t, env)
	server["kind"] = "server"
	testenv.EventuallyTrue(t, 30*time.Second, "vigil_dns_requests_total{kind=server}", func() bool {
		return env.value(t, "vigil_dns_requests_total", server) >= toServer
	})
	time.Sleep(1500 * time.Millisecond) // anything counted twice, or timed out wrongly, would show now
	for _, c := range checks {
		if got := env.value(t, "vigil_dns_requests_total", c.labels); got != c.want {
			t.Errorf("vigil_dns_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
		if got := env.value(t, "vigil_dns_request_duration_seconds", c.labels); got != c.want {
			t.Errorf("vigil_dns_request_duration_seconds_count%v = %v, want %v", c.labels, got, c.want)
		}
	}
	for _, unit := range []string{digUnit, goUnit, glibcUnit, tcpUnit, goTCPUnit} {
		var want float64
		for _, c := range checks {
			if c.labels["unit"] == unit {
				want += c.want
			}
		}
		if got := env.value(t, "vigil_dns_requests_total", series{"unit": unit}); got != want {
			t.Errorf("vigil_dns_requests_total{unit=%q} = %v in all, want %v", unit, got, want)
		}
	}
	// The server side: every query the clients sent it, answered (none
	// times out; REFUSED is an answer).
	if got := env.value(t, "vigil_dns_requests_total", server); got != toServer {
		t.Errorf("vigil_dns_requests_total{kind=server} = %v, want %v", got, toServer)
	}
	// By listening address: glibc's four queries went to port 53.
	for dest, want := range map[string]float64{srv.Addr: toServer - 4, port53: 4} {
		server["destination"] = dest
		if got := env.value(t, "vigil_dns_requests_total", server); got != want {
			t.Errorf("vigil_dns_requests_total{kind=server,destination=%q} = %v, want %v", dest, got, want)
		}
	}
	delete(server, "destination")
	server["rcode"] = "timeout"
	if got := env.value(t, "vigil_dns_requests_total", server); got != 0 {
		t.Errorf("vigil_dns_requests_total{kind=server,rcode=timeout} = %v, want 0", got)
	}
	// Node-wide (other sessions' traffic shows here too): logged only.
	for _, reason := range []string{"malformed", "unexpected"} {
		t.Logf("vigil_ebpf_protocol_rejected_total{protocol=dns,reason=%s} = %v", reason,
			env.value(t, "vigil_ebpf_protocol_rejected_total", series{"protocol": "dns", "reason": reason}))
	}

	// Spans: every query is sampled here (ratio 1, no rate cap), both
	// sides; failures have an error status.
	dnsSpans := func(kind ptrace.SpanKind, name, rcode string) []ptrace.Span {
		return env.findSpans(func(s ptrace.Span) bool {
			rc, ok := s.Attributes().Get("dns.response_code")
			p, ok2 := s.Attributes().Get("server.port")
			return ok && ok2 && s.Kind() == kind && s.Name() == name && rc.Str() == rcode && p.Int() == int64(srv.Port)
		})
	}
	testenv.EventuallyTrue(t, 10*time.Second, "DNS spans", func() bool {
		return len(dnsSpans(ptrace.SpanKindClient, "DNS MX", "NOERROR")) >= 1 && len(dnsSpans(ptrace.SpanKindServer, "DNS A", "REFUSED")) >= 1
	})
	for _, s := range dnsSpans(ptrace.SpanKindServer, "DNS A", "REFUSED") {
		if s.Status().Code() != ptrace.StatusCodeError {
			t.Errorf("span %s REFUSED: status %v, want error", s.Name(), s.Status().Code())
		}
	}
}

// runDNSGoClient runs the dns-go-client helper in the cgroup at dir and
// returns how many queries it wrote, by "qtype rcode".
func runDNSGoClient(t *testing.T, dir, arg string) map[string]float64 {
	t.Helper()
	cmd := helperCmd(t, dir, "dns-go-client", arg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Go resolver %s: %v\n%s", arg, err, stderr.String())
	}
	var sent map[string]float64
	if err := json.Unmarshal(out, &sent); err != nil {
		t.Fatalf("Go resolver's counts %q: %v", out, err)
	}
	t.Logf("Go resolver (%s) sent %v", arg, sent)
	return sent
}

// digStatus is the status line of dig's answer, or its last line.
func digStatus(out []byte) string {
	for _, l := range strings.Split(string(out), "\n") {
		if i := strings.Index(l, "status: "); i >= 0 {
			return l[i:]
		}
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// dnsGoClient looks names up with Go's own resolver (PreferGo), its
// connections dialled to the server in arg ("server,hole": an address
// that answers and one that never does), and prints as JSON how many
// queries it wrote by "qtype rcode", the rcode being what the lookup's
// result says the answer was.
func dnsGoClient(arg string) error {
	network, arg, _ := strings.Cut(arg, ",")
	srv, hole, _ := strings.Cut(arg, ",")
	var mu sync.Mutex
	sent := map[string]float64{}
	lookup := func(addr, name, rcode string, timeout time.Duration) error {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			count := func(qtype string) {
				mu.Lock()
				sent[qtype+" "+rcode]++
				mu.Unlock()
			}
			if network == "tcp" {
				// Not a net.PacketConn: the resolver frames its
				// queries as over TCP.
				return &countingStream{Conn: c, count: count}, nil
			}
			return &countingConn{UDPConn: c.(*net.UDPConn), count: count}, nil
		}}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := r.LookupIPAddr(ctx, name)
		var dnsErr *net.DNSError
		switch {
		case rcode == "NOERROR" && err != nil:
			return fmt.Errorf("lookup %s: %w", name, err)
		case rcode != "NOERROR" && !errors.As(err, &dnsErr):
			return fmt.Errorf("lookup %s: %v, want a DNS error", name, err)
		case rcode == "NXDOMAIN" && !dnsErr.IsNotFound:
			return fmt.Errorf("lookup %s: %v, want not found", name, err)
		case rcode == "timeout" && !dnsErr.IsTimeout:
			return fmt.Errorf("lookup %s: %v, want a timeout", name, err)
		}
		return nil
	}
	lookups := []struct{ addr, name, rcode string }{
		{srv, "www.vigil.test.", "NOERROR"},
		{srv, "mail.vigil.test.", "NOERROR"},
		{srv, "nope.vigil.test.", "NXDOMAIN"},
		{srv, "www.example.com.", "REFUSED"},
		{hole, "www.vigil.test.", "timeout"},
	}
	if network == "tcp" {
		lookups = lookups[:3]
	}
	for _, l := range lookups {
		timeout := 10 * time.Second // generous: a late answer would make the resolver retry
		if l.rcode == "timeout" {
			timeout = 1500 * time.Millisecond
		}
		if err := lookup(l.addr, l.name, l.rcode, timeout); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(sent)
}

// countingConn counts the DNS queries written on it by query type.
type countingConn struct {
	*net.UDPConn
	count func(qtype string)
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.UDPConn.Write(b)
	if err == nil && len(b) >= 12 {
		c.tally(b)
	}
	return n, err
}

// tally counts the query in b by its type.
func (c *countingConn) tally(b []byte) {
	qtype := "other"
	if i := skipQName(b, 12); i > 0 && i+2 <= len(b) {
		switch t := uint16(b[i])<<8 | uint16(b[i+1]); t {
		case 1:
			qtype = "A"
		case 28:
			qtype = "AAAA"
		}
	}
	c.count(qtype)
}

// countingStream counts the DNS queries written on a TCP connection (each
// with its two-byte length first, in one write as Go's resolver does).
type countingStream struct {
	net.Conn
	count func(qtype string)
}

func (c *countingStream) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil && len(b) >= 14 {
		(&countingConn{count: c.count}).tally(b[2:])
	}
	return n, err
}

// skipQName returns the offset after the uncompressed name at b[i:], or 0.
func skipQName(b []byte, i int) int {
	for i < len(b) {
		l := int(b[i])
		if l == 0 {
			return i + 1
		}
		i += 1 + l
	}
	return 0
}
