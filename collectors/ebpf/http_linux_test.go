//go:build linux

package ebpf

import (
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// findSpans returns the spans captured so far that match.
func (e *testEnv) findSpans(match func(ptrace.Span) bool) []ptrace.Span {
	var out []ptrace.Span
	for _, td := range e.sink.AllTraces() {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j).Spans()
				for k := 0; k < ss.Len(); k++ {
					if match(ss.At(k)) {
						out = append(out, ss.At(k))
					}
				}
			}
		}
	}
	return out
}

// strAttr is a span's attribute k as a string, "" when the span has none
// (spans of other protocols, such as the node's own DNS queries, lack the
// HTTP ones).
func strAttr(s ptrace.Span, k string) string {
	v, ok := s.Attributes().Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

// spansConfig exports every span (other processes on a shared machine
// make HTTP requests too, which would use up the default rate cap), and
// sees HTTP through the given hook.
func spansConfig(hook string) *Config {
	cfg := NewConfig()
	cfg.Spans.MaxPerSecond = 0
	cfg.HTTPHook = hook
	return cfg
}

// forEachHTTPHook runs test once per HTTP path: the socket-layer
// tracepoints (Linux 6.4+; CI's kernel has them) and the syscall
// tracepoints that older kernels fall back to. Each run first checks that
// exactly that path's programs are attached.
func forEachHTTPHook(t *testing.T, test func(t *testing.T, hook string)) {
	for _, hook := range []string{"socket", "syscalls"} {
		t.Run(hook, func(t *testing.T) {
			if hook == "socket" && !kernelHasSocketTracepoints() {
				if os.Getenv("CI") == "true" {
					t.Fatal("the kernel lacks sock/sock_send_length or sock/sock_recv_length, which CI's kernel has")
				}
				t.Skip("the kernel lacks sock/sock_send_length and sock/sock_recv_length (Linux 6.4+)")
			}
			test(t, hook)
		})
	}
}

func kernelHasSocketTracepoints() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	for _, tp := range []string{"sock_send_length", "sock_recv_length"} {
		var fn *btf.Typedef
		if spec.TypeByName("btf_trace_"+tp, &fn) != nil {
			return false
		}
	}
	return true
}

// requireHTTPHook fails unless exactly the programs of hook's HTTP path
// are attached.
func requireHTTPHook(t *testing.T, env *testEnv, hook string) {
	t.Helper()
	for _, p := range programs {
		if p.httpHook == "" {
			continue
		}
		want := 0.0
		if p.httpHook == hook {
			want = 1
		}
		if v := env.value(t, "vigil_ebpf_program_loaded", map[string]string{"program": p.name}); v != want {
			t.Errorf("http_hook %s: vigil_ebpf_program_loaded{program=%q} = %v, want %v", hook, p.name, v, want)
		}
	}
}

func TestHTTP(t *testing.T) { forEachHTTPHook(t, testHTTP) }

func testHTTP(t *testing.T, hook string) {
	env := startCollector(t, spansConfig(hook))
	requireHTTPHook(t, env, hook)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // a latency the spans must show
		_, _ = w.Write([]byte(`{"id":"` + r.PathValue("id") + `"}`))
	})
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })

	const unit = "vigil-ebpf-test-http.service"
	cg := testCgroup(t, unit)
	cmd := helperCmd(t, cg, "http-client", ln.Addr().String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("http client: %v\n%s", err, out)
	}

	type series map[string]string
	for _, c := range []struct {
		labels series
		want   float64
	}{
		{series{"kind": "client", "unit": unit, "method": "GET", "route": "/users/{id}", "status_class": "2xx"}, 2},
		{series{"kind": "client", "unit": unit, "method": "POST", "route": "/orders", "status_class": "2xx"}, 1},
		{series{"kind": "client", "unit": unit, "method": "GET", "route": "/missing", "status_class": "4xx"}, 1},
		{series{"kind": "server", "method": "GET", "route": "/users/{id}", "status_class": "2xx"}, 2},
		{series{"kind": "server", "method": "POST", "route": "/orders", "status_class": "2xx"}, 1},
		{series{"kind": "server", "method": "GET", "route": "/missing", "status_class": "4xx"}, 1},
	} {
		testenv.EventuallyTrue(t, 30*time.Second, "vigil_http_requests_total", func() bool {
			return env.value(t, "vigil_http_requests_total", c.labels) >= c.want
		})
		if got := env.value(t, "vigil_http_requests_total", c.labels); got != c.want {
			t.Errorf("vigil_http_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
		if got := env.value(t, "vigil_http_request_duration_seconds", c.labels); got != c.want {
			t.Errorf("vigil_http_request_duration_seconds_count%v = %v, want %v", c.labels, got, c.want)
		}
	}

	// The client's requests by the server they went to (a dependency's
	// errors name the dependency).
	dest := ln.Addr().String()
	for _, c := range []struct {
		class string
		want  float64
	}{{"2xx", 3}, {"4xx", 1}} {
		l := series{"unit": unit, "destination": dest, "status_class": c.class}
		if got := env.value(t, "vigil_http_client_requests_by_destination_total", l); got != c.want {
			t.Errorf("vigil_http_client_requests_by_destination_total%v = %v, want %v", l, got, c.want)
		}
	}

	// The first GET carried a traceparent: both sides join that trace as
	// children of the span it names.
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	var traced []ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "spans with the client's traceparent", func() bool {
		traced = env.findSpans(func(s ptrace.Span) bool { return s.TraceID().String() == traceID })
		return len(traced) >= 2
	})
	kinds := map[ptrace.SpanKind]ptrace.Span{}
	for _, s := range traced {
		kinds[s.Kind()] = s
		if s.ParentSpanID().String() != parentID {
			t.Errorf("%s span parent = %s, want %s", s.Kind(), s.ParentSpanID(), parentID)
		}
		if s.Name() != "GET /users/{id}" || strAttr(s, "http.request.method") != "GET" ||
			strAttr(s, "url.path") != "/users/12345" || strAttr(s, "http.route") != "/users/{id}" ||
			strAttr(s, "http.response.status_code") != "200" || strAttr(s, "server.port") != strings.Split(ln.Addr().String(), ":")[1] {
			t.Errorf("%s span %q attributes: %v", s.Kind(), s.Name(), s.Attributes().AsRaw())
		}
		if d := s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime()); d < 20*time.Millisecond || d > time.Minute {
			t.Errorf("%s span lasted %v, want at least the handler's 20ms", s.Kind(), d)
		}
	}
	if len(kinds) != 2 || kinds[ptrace.SpanKindServer] == (ptrace.Span{}) || kinds[ptrace.SpanKindClient] == (ptrace.Span{}) {
		t.Fatalf("want one server and one client span in trace %s, got %d spans", traceID, len(traced))
	}
	if got := strAttr(kinds[ptrace.SpanKindServer], "client.address"); got != "127.0.0.1" {
		t.Errorf("server span client.address = %q", got)
	}
	// Requests without a traceparent start their own trace.
	var untraced []ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "the POST /orders server span", func() bool {
		untraced = env.findSpans(func(s ptrace.Span) bool {
			return strAttr(s, "http.route") == "/orders" && s.Kind() == ptrace.SpanKindServer
		})
		return len(untraced) > 0
	})
	if len(untraced) != 1 || untraced[0].ParentSpanID().String() != "" || untraced[0].TraceID().String() == traceID {
		t.Errorf("POST /orders server spans: %d, want one root span of its own trace", len(untraced))
	}
}
