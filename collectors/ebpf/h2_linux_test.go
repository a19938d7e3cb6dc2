//go:build linux

package ebpf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// grpcBigReply is the size of the message /test.Big/Get answers: more than
// one 511-byte window (its DATA frame is skipped by the kernel's walk).
const grpcBigReply = 2000

// newGRPCServer serves grpc-go's stock health service and, through its
// unknown service handler, /test.Flaky/Call (UNAVAILABLE), /test.Big/Get
// and /vigiltest.Concurrent/Call (a grpcBigReply-byte message) and
// UNIMPLEMENTED for anything else, on ln.
func newGRPCServer(ln net.Listener, opts ...grpc.ServerOption) *grpc.Server {
	srv := grpc.NewServer(append(opts, grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		m, _ := grpc.MethodFromServerStream(stream)
		switch m {
		case "/test.Flaky/Call":
			return status.Error(codes.Unavailable, "flaky")
		case "/test.Big/Get", "/vigiltest.Concurrent/Call":
			if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return stream.SendMsg(wrapperspb.Bytes(make([]byte, grpcBigReply)))
		}
		return status.Errorf(codes.Unimplemented, "unknown method %s", m)
	}))...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	return srv
}

// grpcServer is the gRPC server helper: it serves newGRPCServer on
// 127.0.0.1:0 and prints its address.
func grpcServer(string) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	newGRPCServer(ln)
	select {}
}

// h2cServer is the unencrypted HTTP/2 server helper: /h2c/ok answers 200,
// /h2c/down 503, anything else 404; it prints its address.
func h2cServer(string) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	var h2only http.Protocols
	h2only.SetUnencryptedHTTP2(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /h2c/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /h2c/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	srv := &http.Server{Handler: mux, Protocols: &h2only}
	return srv.Serve(ln)
}

// startHelperServer runs server helper name in the cgroup at dir and
// returns the address it printed.
func startHelperServer(t *testing.T, dir, name string) string {
	t.Helper()
	cmd := helperCmd(t, dir, name, "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return strings.TrimSpace(addr)
}

// grpcClient makes TestGRPC's calls to the server at arg: on one
// connection 3 health checks, 2 UNAVAILABLE, 1 UNIMPLEMENTED, 2 replies of
// grpcBigReply bytes and a health check with 2 KB of metadata (a header
// block of about four windows); then, on a second connection, one health
// check with 6 KB of metadata, a header block longer than the kernel sends
// (the connection is lost on both sides).
// grpcTraceparent is the traceparent the gRPC client sends with its first
// test.Flaky/Call.
const grpcTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func grpcClient(arg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func() (*grpc.ClientConn, error) {
		return grpc.NewClient("passthrough:///"+arg, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	cc, err := dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	for range 3 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return fmt.Errorf("health check: %w", err)
		}
	}
	call := func(method string, want codes.Code, reply any) error {
		err := cc.Invoke(ctx, method, &emptypb.Empty{}, reply)
		if status.Code(err) != want {
			return fmt.Errorf("%s: %v, want %v", method, err, want)
		}
		return nil
	}
	// The first call carries a traceparent (as an instrumented caller's
	// would): both sides' spans join that trace.
	if err := cc.Invoke(metadata.AppendToOutgoingContext(ctx, "traceparent", grpcTraceparent), "/test.Flaky/Call", &emptypb.Empty{}, &emptypb.Empty{}); status.Code(err) != codes.Unavailable {
		return fmt.Errorf("/test.Flaky/Call with a traceparent: %v, want %v", err, codes.Unavailable)
	}
	if err := call("/test.Flaky/Call", codes.Unavailable, &emptypb.Empty{}); err != nil {
		return err
	}
	if err := call("/test.Missing/Do", codes.Unimplemented, &emptypb.Empty{}); err != nil {
		return err
	}
	for range 2 {
		var b wrapperspb.BytesValue
		if err := call("/test.Big/Get", codes.OK, &b); err != nil {
			return err
		}
		if len(b.Value) != grpcBigReply {
			return fmt.Errorf("/test.Big/Get: %d bytes, want %d", len(b.Value), grpcBigReply)
		}
	}
	md := metadata.Pairs("x-padding", strings.Repeat("a", 2000))
	if _, err := hc.Check(metadata.NewOutgoingContext(ctx, md), &healthpb.HealthCheckRequest{}); err != nil {
		return fmt.Errorf("health check with 2 KB of metadata: %w", err)
	}

	cc2, err := dial()
	if err != nil {
		return err
	}
	defer cc2.Close()
	md = metadata.Pairs("x-padding", strings.Repeat("b", 6000))
	if _, err := healthpb.NewHealthClient(cc2).Check(metadata.NewOutgoingContext(ctx, md), &healthpb.HealthCheckRequest{}); err != nil {
		return fmt.Errorf("health check with 6 KB of metadata: %w", err)
	}
	return nil
}

// h2cClient sends TestH2C's requests to the server at arg over one
// unencrypted HTTP/2 connection (prior knowledge): 3 × 200, 2 × 404, 1 × 503.
func h2cClient(arg string) error {
	var h2only http.Protocols
	h2only.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &h2only}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	for _, r := range []struct {
		path string
		n    int
		want int
	}{{"/h2c/ok", 3, 200}, {"/h2c/missing/12345", 2, 404}, {"/h2c/down", 1, 503}} {
		for range r.n {
			resp, err := cl.Get("http://" + arg + r.path)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != r.want || resp.ProtoMajor != 2 {
				return fmt.Errorf("GET %s: %s %d, want HTTP/2 %d", r.path, resp.Proto, resp.StatusCode, r.want)
			}
		}
	}
	return nil
}

// h2cConfig is the collector's configuration for the clear-text HTTP/2
// tests: the socket path, every span, and no TLS programs. These tests
// count HTTP/2 connections lost node-wide (vigil_ebpf_h2_dropped_total has
// no workload label), and with TLS on, the collector attaches to other
// sessions' Go TLS servers (kube-apiserver) in the middle of their HTTP/2
// connections while the test runs: TestH2C once counted 2 no_preface so
// in a full CI run, its own connections all decoded.
func h2cConfig() *Config {
	cfg := spansConfig("socket")
	cfg.Programs.TLS = false
	return cfg
}

// TestGRPC runs a grpc-go server and client (helpers, each in a cgroup of
// its own) over clear-text HTTP/2 and checks the
// calls counted on both sides exactly, as the socket path's frame walk
// sends them (the syscall path does not follow HTTP/2: docs/ebpf.md).
func TestGRPC(t *testing.T) {
	if !kernelHasSocketTracepoints() {
		t.Skip("HTTP/2 is followed on the socket path only (Linux 6.4+)")
	}
	env := startCollector(t, h2cConfig())
	requireHTTPHook(t, env, "socket")
	const unit, serverUnit = "vigil-ebpf-test-grpc.service", "vigil-ebpf-test-grpc-server.service"
	cg, serverCg := testCgroup(t, unit), testCgroup(t, serverUnit)
	env.knownCgroup(t, cg)
	env.knownCgroup(t, serverCg)
	addr := startHelperServer(t, serverCg, "grpc-server")
	dropped := func(reason string) float64 {
		return env.value(t, "vigil_ebpf_h2_dropped_total", map[string]string{"reason": reason})
	}
	overflow0 := dropped("overflow")
	if out, err := helperCmd(t, cg, "grpc-client", addr).CombinedOutput(); err != nil {
		t.Fatalf("grpc client: %v\n%s", err, out)
	}

	type series map[string]string
	var checks []struct {
		labels series
		want   float64
	}
	for _, kind := range []string{"client", "server"} {
		for _, c := range []struct {
			service, method, code string
			n                     float64
		}{
			// 3 checks and the one with 2 KB of metadata; the one
			// with 6 KB lost its connection.
			{"grpc.health.v1.Health", "Check", "OK", 4},
			{"test.Flaky", "Call", "UNAVAILABLE", 2},
			{"test.Missing", "Do", "UNIMPLEMENTED", 1},
			{"test.Big", "Get", "OK", 2},
		} {
			l := series{"kind": kind, "service": c.service, "method": c.method, "code": c.code}
			l["unit"] = unit
			if kind == "server" {
				l["unit"] = serverUnit
			}
			checks = append(checks, struct {
				labels series
				want   float64
			}{l, c.n})
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range []string{"no_preface", "gap", "bad_frame", "hpack_error", "overflow", "evicted", "stream_lost", "stream_unfinished"} {
				t.Logf("vigil_ebpf_h2_dropped_total{reason=%q} = %v", r, dropped(r))
			}
			t.Logf("vigil_ebpf_events_lost_total = %v", env.value(t, "vigil_ebpf_events_lost_total", nil))
		}
	})
	for _, c := range checks {
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_grpc_requests_total%v", c.labels), func() bool {
			return env.value(t, "vigil_grpc_requests_total", c.labels) >= c.want
		})
	}
	// The second connection's 6 KB header block: lost on the client's
	// write and on the server's read.
	testenv.EventuallyTrue(t, 10*time.Second, "vigil_ebpf_h2_dropped_total{reason=overflow} grows by 2", func() bool {
		return dropped("overflow")-overflow0 >= 2
	})
	time.Sleep(200 * time.Millisecond) // anything counted twice would show now
	for _, c := range checks {
		if got := env.value(t, "vigil_grpc_requests_total", c.labels); got != c.want {
			t.Errorf("vigil_grpc_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
		if got := env.value(t, "vigil_grpc_request_duration_seconds", c.labels); got != c.want {
			t.Errorf("vigil_grpc_request_duration_seconds_count%v = %v, want %v", c.labels, got, c.want)
		}
	}
	for _, u := range []string{unit, serverUnit} {
		if got := env.value(t, "vigil_grpc_requests_total", series{"unit": u}); got != 9 {
			t.Errorf("vigil_grpc_requests_total{unit=%q} = %v, want 9 (nothing else counted)", u, got)
		}
	}
	if got := dropped("overflow") - overflow0; got != 2 {
		t.Errorf("vigil_ebpf_h2_dropped_total{reason=overflow} grew by %v, want 2", got)
	}
	for _, r := range []string{"no_preface", "gap", "bad_frame", "hpack_error"} {
		if v := dropped(r); v != 0 {
			t.Errorf("vigil_ebpf_h2_dropped_total{reason=%q} = %v, want 0", r, v)
		}
	}
	// Nothing of it is taken for HTTP/1.x, Redis or PostgreSQL.
	if got := env.value(t, "vigil_http_requests_total", series{"unit": unit}); got != 0 {
		t.Errorf("vigil_http_requests_total{unit=%q} = %v, want 0 (gRPC calls are not HTTP requests)", unit, got)
	}

	// Spans: the failed calls always (UNAVAILABLE is an error on both
	// sides), with the RPC attributes.
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	var flaky []ptrace.Span
	testenv.EventuallyTrue(t, 10*time.Second, "4 test.Flaky/Call spans", func() bool {
		flaky = env.findSpans(func(sp ptrace.Span) bool {
			return sp.Name() == "test.Flaky/Call" && strAttr(sp, "server.port") == port
		})
		return len(flaky) >= 4
	})
	if len(flaky) != 4 {
		t.Errorf("%d test.Flaky/Call spans, want 4 (2 calls, client and server)", len(flaky))
	}
	for _, sp := range flaky {
		for k, want := range map[string]string{"rpc.system": "grpc", "rpc.service": "test.Flaky", "rpc.method": "Call",
			"rpc.grpc.status_code": "14", "network.protocol.version": "2", "error.type": "UNAVAILABLE"} {
			if got := strAttr(sp, k); got != want {
				t.Errorf("span %s (%s): %s = %q, want %q", sp.Name(), sp.Kind(), k, got, want)
			}
		}
		if sp.Status().Code() != ptrace.StatusCodeError {
			t.Errorf("span %s (%s): status %v, want error", sp.Name(), sp.Kind(), sp.Status().Code())
		}
	}
	// The call that carried a traceparent: its client and server spans are
	// in that trace, children of the span it names; the other call's are
	// not.
	kinds := map[ptrace.SpanKind]int{}
	for _, sp := range flaky {
		if sp.TraceID().String() != grpcTraceparent[3:35] {
			continue
		}
		kinds[sp.Kind()]++
		if got := sp.ParentSpanID().String(); got != grpcTraceparent[36:52] {
			t.Errorf("span %s (%s) in the caller's trace: parent %s, want %s", sp.Name(), sp.Kind(), got, grpcTraceparent[36:52])
		}
	}
	if kinds[ptrace.SpanKindClient] != 1 || kinds[ptrace.SpanKindServer] != 1 {
		t.Errorf("test.Flaky/Call spans in the traceparent's trace: %v, want one client and one server", kinds)
	}
}

// TestH2C runs net/http's unencrypted HTTP/2 server and client (helpers,
// each in a cgroup of its own): its requests are
// counted in the HTTP families, exactly, on both sides.
func TestH2C(t *testing.T) {
	if !kernelHasSocketTracepoints() {
		t.Skip("HTTP/2 is followed on the socket path only (Linux 6.4+)")
	}
	env := startCollector(t, h2cConfig())
	requireHTTPHook(t, env, "socket")
	const unit, serverUnit = "vigil-ebpf-test-h2c.service", "vigil-ebpf-test-h2c-server.service"
	cg, serverCg := testCgroup(t, unit), testCgroup(t, serverUnit)
	env.knownCgroup(t, cg)
	env.knownCgroup(t, serverCg)
	addr := startHelperServer(t, serverCg, "h2c-server")
	if out, err := helperCmd(t, cg, "h2c-client", addr).CombinedOutput(); err != nil {
		t.Fatalf("h2c client: %v\n%s", err, out)
	}
	type series map[string]string
	var checks []struct {
		labels series
		want   float64
	}
	for _, kind := range []string{"client", "server"} {
		for _, c := range []struct {
			route, class string
			n            float64
		}{{"/h2c/ok", "2xx", 3}, {"/h2c/missing/{id}", "4xx", 2}, {"/h2c/down", "5xx", 1}} {
			l := series{"kind": kind, "method": "GET", "route": c.route, "status_class": c.class, "unit": unit}
			if kind == "server" {
				l["unit"] = serverUnit
			}
			checks = append(checks, struct {
				labels series
				want   float64
			}{l, c.n})
		}
	}
	for _, c := range checks {
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_http_requests_total%v", c.labels), func() bool {
			return env.value(t, "vigil_http_requests_total", c.labels) >= c.want
		})
	}
	time.Sleep(200 * time.Millisecond)
	for _, c := range checks {
		if got := env.value(t, "vigil_http_requests_total", c.labels); got != c.want {
			t.Errorf("vigil_http_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	for _, u := range []string{unit, serverUnit} {
		if got := env.value(t, "vigil_http_requests_total", series{"unit": u}); got != 6 {
			t.Errorf("vigil_http_requests_total{unit=%q} = %v, want 6", u, got)
		}
	}
	// Spans: every request on both sides (spansConfig samples all), as
	// HTTP/2.
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	var v2 []ptrace.Span
	testenv.EventuallyTrue(t, 10*time.Second, "12 HTTP/2 spans", func() bool {
		v2 = env.findSpans(func(sp ptrace.Span) bool {
			return strAttr(sp, "server.port") == port && strAttr(sp, "http.request.method") == "GET"
		})
		return len(v2) >= 12
	})
	if len(v2) != 12 {
		t.Errorf("%d HTTP spans to the server, want 12 (6 requests, both sides)", len(v2))
	}
	for _, sp := range v2 {
		if got := strAttr(sp, "network.protocol.version"); got != "2" {
			t.Errorf("span %s: network.protocol.version %q, want 2", sp.Name(), got)
		}
	}
	for _, r := range []string{"no_preface", "gap", "bad_frame", "hpack_error", "overflow"} {
		if v := env.value(t, "vigil_ebpf_h2_dropped_total", map[string]string{"reason": r}); v != 0 {
			t.Errorf("vigil_ebpf_h2_dropped_total{reason=%q} = %v, want 0", r, v)
		}
	}
}

// TestGRPCConcurrent makes 16 goroutines share one grpc-go connection, 200
// UNIMPLEMENTED calls and 200 calls with a 2,000-byte reply each, client and
// server in the test's process: reads and writes then carry frames of many
// streams at once (up to about a hundred a transfer), and every call is
// counted on both sides, none lost.
func TestGRPCConcurrent(t *testing.T) {
	if !kernelHasSocketTracepoints() {
		t.Skip("HTTP/2 is followed on the socket path only (Linux 6.4+)")
	}
	env := startCollector(t, h2cConfig())
	requireHTTPHook(t, env, "socket")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(newGRPCServer(ln).Stop)
	addr := ln.Addr().String()
	own := ownWorkload(t, env)
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const goroutines, calls = 16, 200
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if err := cc.Invoke(ctx, "/vigiltest.Concurrent/Missing", &emptypb.Empty{}, &emptypb.Empty{}); status.Code(err) != codes.Unimplemented {
					t.Errorf("/vigiltest.Concurrent/Missing: %v, want UNIMPLEMENTED", err)
					return
				}
				var b wrapperspb.BytesValue
				if err := cc.Invoke(ctx, "/vigiltest.Concurrent/Call", &emptypb.Empty{}, &b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, kind := range []string{"client", "server"} {
		for _, m := range []struct{ method, code string }{{"Missing", "UNIMPLEMENTED"}, {"Call", "OK"}} {
			// The server side runs in the test's process, whose
			// workload other processes may share (the root cgroup):
			// a service name of its own tells its calls apart.
			l := map[string]string{"kind": kind, "service": "vigiltest.Concurrent", "method": m.method, "code": m.code}
			for k, v := range own {
				l[k] = v
			}
			testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_grpc_requests_total%v", l), func() bool {
				return env.value(t, "vigil_grpc_requests_total", l) >= goroutines*calls
			})
			time.Sleep(100 * time.Millisecond)
			if got := env.value(t, "vigil_grpc_requests_total", l); got != goroutines*calls {
				t.Errorf("vigil_grpc_requests_total%v = %v, want %d", l, got, goroutines*calls)
			}
		}
	}
	for _, r := range []string{"no_preface", "gap", "bad_frame", "hpack_error", "overflow", "stream_lost"} {
		if v := env.value(t, "vigil_ebpf_h2_dropped_total", map[string]string{"reason": r}); v != 0 {
			t.Errorf("vigil_ebpf_h2_dropped_total{reason=%q} = %v, want 0", r, v)
		}
	}
}

// TestH2NotSettings: a server whose first write only looks like an HTTP/2
// SETTINGS frame header (nine bytes: an empty SETTINGS), then reads an
// HTTP/1.1 request instead of the client preface, is given up at that
// read: its request and response are counted as HTTP/1.x on both sides,
// and nothing is counted as HTTP/2.
func TestH2NotSettings(t *testing.T) {
	if !kernelHasSocketTracepoints() {
		t.Skip("HTTP/2 is followed on the socket path only (Linux 6.4+)")
	}
	env := startCollector(t, h2cConfig())
	requireHTTPHook(t, env, "socket")
	own := ownWorkload(t, env)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0}); err != nil {
			done <- err
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			done <- err
			return
		}
		_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_ = req.Body.Close()
		done <- err
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := io.ReadFull(r, make([]byte, 9)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /vigiltest/not-h2 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"client", "server"} {
		l := map[string]string{"kind": kind, "route": "/vigiltest/not-h2", "status_class": "2xx"}
		for k, v := range own {
			l[k] = v
		}
		testenv.EventuallyTrue(t, 10*time.Second, fmt.Sprintf("vigil_http_requests_total%v", l), func() bool {
			return env.value(t, "vigil_http_requests_total", l) >= 1
		})
		time.Sleep(100 * time.Millisecond)
		if got := env.value(t, "vigil_http_requests_total", l); got != 1 {
			t.Errorf("vigil_http_requests_total%v = %v, want 1", l, got)
		}
	}
	for _, r := range []string{"no_preface", "gap", "bad_frame", "overflow"} {
		if v := env.value(t, "vigil_ebpf_h2_dropped_total", map[string]string{"reason": r}); v != 0 {
			t.Errorf("vigil_ebpf_h2_dropped_total{reason=%q} = %v, want 0", r, v)
		}
	}
}

// An HTTP/2 decoder is closed when the events reader sees its TCP
// connection close (same cgroup and addresses), once the HTTP reader is
// past the close by h2CloseDelay; a close of another connection, one too
// recent, or one before the decoder started (its addresses reused) leaves
// it; a queue that is full counts the closes it drops.
func TestH2ClosedWithItsConnection(t *testing.T) {
	h := newTestHandlers()
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	now := monotonicNS()
	start := func(fd uint32, sport uint16, ts uint64) {
		e := sampleL7(protoH2, httpWrite, true, ts, preface)
		e.HasPrefix, e.Fd, e.Sport, e.CgroupId = h2Start, fd, sport, 7
		h.handleHTTP(encode(t, e))
	}
	closeTCP := func(sport uint16, cgroup uint64, ts uint64) {
		e := sampleTCP()
		e.Kind, e.TsNs, e.CgroupId = tcpClose, ts, cgroup
		// sampleHTTP's socket: local 127.0.0.1:sport, remote 127.0.0.1:40000.
		e.Sport, e.Dport = sport, 40000
		h.handleEvent(encode(t, e))
	}
	var closed []uint32
	hook := func(pid, fd uint32) { closed = append(closed, fd) }
	h.h2Closes.hook.Store(&hook)
	start(3, 8080, now)
	start(4, 8081, now+1)
	start(5, 8082, now+10)
	if n := testutil.ToFloat64(h.m.h2Conns); n != 3 {
		t.Fatalf("vigil_ebpf_h2_connections = %v, want 3", n)
	}
	closeTCP(8080, 8, now+2)   // another cgroup: not this connection
	closeTCP(9999, 7, now+2)   // another port
	closeTCP(8082, 7, now+5)   // before fd 5's decoder started: an earlier connection
	closeTCP(8081, 7, now+100) // fd 4's
	h.closeH2(now + 100 + h2CloseDelay - 1)
	if len(closed) != 0 {
		t.Errorf("closed %v before h2CloseDelay passed", closed)
	}
	h.closeH2(now + 100 + h2CloseDelay)
	if len(closed) != 1 || closed[0] != 4 {
		t.Errorf("closed descriptors %v, want [4]", closed)
	}
	if n := testutil.ToFloat64(h.m.h2Conns); n != 2 {
		t.Errorf("vigil_ebpf_h2_connections = %v, want 2", n)
	}
	if _, ok := h.http.h2.conns[connKey{7, 4}]; ok {
		t.Error("fd 4's decoder is still there")
	}
	if len(h.http.h2.closing) != 0 || len(h.h2Closes.q) != 0 {
		t.Errorf("%d closes pending, %d queued; want none", len(h.http.h2.closing), len(h.h2Closes.q))
	}
	// Hostile: more closes than the queue holds before the HTTP reader
	// takes them; the rest are counted.
	for i := range maxH2Closes + 10 {
		closeTCP(uint16(10000+i%1000), 7, now+200)
	}
	h.closeH2(now + 200 + h2CloseDelay)
	if got := testutil.ToFloat64(h.m.h2Dropped.WithLabelValues("close_missed")); got != 10 {
		t.Errorf("vigil_ebpf_h2_dropped_total{reason=close_missed} = %v, want 10", got)
	}
	// No decoders, nothing queued.
	h.closeH2(now + 1<<40)
	closeTCP(8080, 7, now+300)
	closeTCP(8082, 7, now+300)
	h.closeH2(now + 300 + h2CloseDelay)
	if n := testutil.ToFloat64(h.m.h2Conns); n != 0 {
		t.Errorf("vigil_ebpf_h2_connections = %v after every connection closed, want 0", n)
	}
	h.closeH2(now + 1<<40)
	closeTCP(8080, 7, now+400)
	if len(h.h2Closes.q) != 0 {
		t.Errorf("%d closes queued with no decoder open, want 0", len(h.h2Closes.q))
	}
}

// fdListener records the descriptor of each connection it accepts.
type fdListener struct {
	net.Listener
	fds chan uint32
}

func (l fdListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.fds <- connFD(c)
	}
	return c, err
}

// connFD is the descriptor of a TCP connection.
func connFD(c net.Conn) uint32 {
	var fd uint32
	if sc, err := c.(*net.TCPConn).SyscallConn(); err == nil {
		_ = sc.Control(func(f uintptr) { fd = uint32(f) })
	}
	return fd
}

// TestH2ClosedOnRealClose: a grpc-go client and server in the test's
// process, one connection and one call; when the client closes the
// connection, the kernel's TCP close events end both sides' HTTP/2
// decoders (before, they lived until 1,024 newer connections evicted
// them).
func TestH2ClosedOnRealClose(t *testing.T) {
	if !kernelHasSocketTracepoints() {
		t.Skip("HTTP/2 is followed on the socket path only (Linux 6.4+)")
	}
	env := startCollector(t, h2cConfig())
	requireHTTPHook(t, env, "socket")
	closed := make(chan [2]uint32, 1024)
	hook := func(pid, fd uint32) {
		select {
		case closed <- [2]uint32{pid, fd}:
		default:
		}
	}
	env.c.handlers.h2Closes.hook.Store(&hook)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan uint32, 4)
	t.Cleanup(newGRPCServer(fdListener{ln, accepted}).Stop)
	var clientFD uint32
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		if err == nil {
			clientFD = connFD(c)
		}
		return c, err
	}
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cc.Invoke(ctx, "/vigiltest.Closing/Call", &emptypb.Empty{}, &emptypb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("/vigiltest.Closing/Call: %v, want UNIMPLEMENTED", err)
	}
	// Both sides' decoders exist: the call is counted on both.
	for _, kind := range []string{"client", "server"} {
		l := map[string]string{"kind": kind, "service": "vigiltest.Closing"}
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_grpc_requests_total%v", l), func() bool {
			return env.value(t, "vigil_grpc_requests_total", l) == 1
		})
	}
	serverFD := <-accepted
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	closedAt := time.Now()
	want := map[uint32]bool{clientFD: true, serverFD: true}
	pid := uint32(os.Getpid())
	deadline := time.After(20 * time.Second)
	for len(want) > 0 {
		select {
		case c := <-closed:
			if c[0] == pid {
				delete(want, c[1])
			}
		case <-deadline:
			t.Fatalf("decoders of descriptors %v (client %d, server %d) not closed after the connection closed", want, clientFD, serverFD)
		}
	}
	t.Logf("both decoders closed %v after the client closed the connection", time.Since(closedAt).Round(time.Millisecond))
}
