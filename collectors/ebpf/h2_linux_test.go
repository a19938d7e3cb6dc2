//go:build linux

package ebpf

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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

// startGRPCServer serves, in the test's own process (its workload is the
// server side), grpc-go's stock health service and, through its unknown
// service handler, /test.Flaky/Call (UNAVAILABLE), /test.Big/Get (a
// grpcBigReply-byte message) and UNIMPLEMENTED for anything else.
func startGRPCServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		m, _ := grpc.MethodFromServerStream(stream)
		switch m {
		case "/test.Flaky/Call":
			return status.Error(codes.Unavailable, "flaky")
		case "/test.Big/Get":
			if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return stream.SendMsg(wrapperspb.Bytes(make([]byte, grpcBigReply)))
		}
		return status.Errorf(codes.Unimplemented, "unknown method %s", m)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// grpcClient makes TestGRPC's calls to the server at arg: on one
// connection 3 health checks, 2 UNAVAILABLE, 1 UNIMPLEMENTED, 2 replies of
// grpcBigReply bytes and a health check with 2 KB of metadata (a header
// block of about four windows); then, on a second connection, one health
// check with 6 KB of metadata, a header block longer than the kernel sends
// (the connection is lost on both sides).
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
	for range 2 {
		if err := call("/test.Flaky/Call", codes.Unavailable, &emptypb.Empty{}); err != nil {
			return err
		}
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
	}{{"/ok", 3, 200}, {"/missing/12345", 2, 404}, {"/down", 1, 503}} {
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

// TestGRPC runs a grpc-go server (in the test's process) and client (a
// helper in a cgroup of its own) over clear-text HTTP/2 and checks the
// calls counted on both sides exactly, as the socket path's frame walk
// sends them (the syscall path does not follow HTTP/2: docs/ebpf.md).
func TestGRPC(t *testing.T) {
	if !kernelHasSocketTracepoints() {
		t.Skip("HTTP/2 is followed on the socket path only (Linux 6.4+)")
	}
	env := startCollector(t, spansConfig("socket"))
	requireHTTPHook(t, env, "socket")
	addr := startGRPCServer(t)
	const unit = "vigil-ebpf-test-grpc.service"
	cg := testCgroup(t, unit)
	env.knownCgroup(t, cg)
	own := ownWorkload(t, env)
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
			if kind == "client" {
				l["unit"] = unit
			} else {
				for k, v := range own {
					l[k] = v
				}
			}
			checks = append(checks, struct {
				labels series
				want   float64
			}{l, c.n})
		}
	}
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
	if got := env.value(t, "vigil_grpc_requests_total", series{"unit": unit}); got != 9 {
		t.Errorf("vigil_grpc_requests_total{unit=%q} = %v, want 9 (nothing else counted)", unit, got)
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
}

// TestH2C runs net/http's unencrypted HTTP/2 server (in the test's
// process) and client (a helper in a cgroup of its own): its requests are
// counted in the HTTP families, exactly, on both sides.
func TestH2C(t *testing.T) {
	if !kernelHasSocketTracepoints() {
		t.Skip("HTTP/2 is followed on the socket path only (Linux 6.4+)")
	}
	env := startCollector(t, spansConfig("socket"))
	requireHTTPHook(t, env, "socket")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h2only http.Protocols
	h2only.SetUnencryptedHTTP2(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	srv := &http.Server{Handler: mux, Protocols: &h2only}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	const unit = "vigil-ebpf-test-h2c.service"
	cg := testCgroup(t, unit)
	env.knownCgroup(t, cg)
	own := ownWorkload(t, env)
	if out, err := helperCmd(t, cg, "h2c-client", ln.Addr().String()).CombinedOutput(); err != nil {
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
		}{{"/ok", "2xx", 3}, {"/missing/{id}", "4xx", 2}, {"/down", "5xx", 1}} {
			l := series{"kind": kind, "method": "GET", "route": c.route, "status_class": c.class}
			if kind == "client" {
				l["unit"] = unit
			} else {
				for k, v := range own {
					l[k] = v
				}
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
	if got := env.value(t, "vigil_http_requests_total", series{"unit": unit}); got != 6 {
		t.Errorf("vigil_http_requests_total{unit=%q} = %v, want 6", unit, got)
	}
	// Spans: every request on both sides (spansConfig samples all), as
	// HTTP/2.
	port := ln.Addr().(*net.TCPAddr).Port
	var v2 []ptrace.Span
	testenv.EventuallyTrue(t, 10*time.Second, "12 HTTP/2 spans", func() bool {
		v2 = env.findSpans(func(sp ptrace.Span) bool {
			return strAttr(sp, "server.port") == fmt.Sprint(port) && strAttr(sp, "http.request.method") == "GET"
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
