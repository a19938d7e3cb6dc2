//go:build linux

package ebpf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/sys/unix"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// rawConn runs raw socket syscalls on a connection's descriptor, waiting
// through the Go poller whenever the socket would block.
type rawConn struct{ rc syscall.RawConn }

func newRawConn(c net.Conn) (rawConn, error) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	return rawConn{rc}, err
}

func (r rawConn) read(op func(fd int) (int, error)) (int, error) {
	var n int
	var opErr error
	err := r.rc.Read(func(fd uintptr) bool {
		n, opErr = op(int(fd))
		return !errors.Is(opErr, unix.EAGAIN)
	})
	return n, errors.Join(err, opErr)
}

func (r rawConn) write(op func(fd int) (int, error)) (int, error) {
	var n int
	var opErr error
	err := r.rc.Write(func(fd uintptr) bool {
		n, opErr = op(int(fd))
		return !errors.Is(opErr, unix.EAGAIN)
	})
	return n, errors.Join(err, opErr)
}

// The syscalls of one exchange: how the client sends the request and reads
// the response, how the server reads and answers.
type rawExchange struct {
	route, method string
	status        int
	clientSend    func(fd int, b []byte) (int, error)
	serverRead    func(fd int, b []byte) (int, error)
	serverSend    func(fd int, b []byte) (int, error)
	clientRead    func(fd int, b []byte) (int, error)
}

var rawExchanges = []rawExchange{
	{route: "/sendto-readv", method: "GET", status: 200,
		clientSend: func(fd int, b []byte) (int, error) { return len(b), unix.Sendto(fd, b, 0, nil) },
		serverRead: func(fd int, b []byte) (int, error) { return unix.Readv(fd, [][]byte{b}) },
		serverSend: func(fd int, b []byte) (int, error) { return unix.SendmsgBuffers(fd, [][]byte{b}, nil, nil, 0) },
		clientRead: func(fd int, b []byte) (int, error) { n, _, err := unix.Recvfrom(fd, b, 0); return n, err }},
	{route: "/writev-recvfrom", method: "POST", status: 404,
		clientSend: func(fd int, b []byte) (int, error) { return unix.Writev(fd, [][]byte{b}) },
		serverRead: func(fd int, b []byte) (int, error) { n, _, err := unix.Recvfrom(fd, b, 0); return n, err },
		serverSend: func(fd int, b []byte) (int, error) { return unix.Writev(fd, [][]byte{b}) },
		clientRead: func(fd int, b []byte) (int, error) { return unix.Readv(fd, [][]byte{b}) }},
}

// rawHTTP is the helper behind TestHTTPSyscalls: a server and a client in
// one process that speak HTTP/1.1 with recvfrom, readv, sendto, writev and
// sendmsg only (never read or write), one connection per exchange.
func rawHTTP() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	for _, x := range rawExchanges {
		errc := make(chan error, 1)
		go func() { errc <- rawServe(ln, x) }()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		rc, err := newRawConn(c)
		if err != nil {
			return err
		}
		req := []byte(x.method + " " + x.route + "?q=1 HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 0\r\n\r\n")
		if _, err := rc.write(func(fd int) (int, error) { return x.clientSend(fd, req) }); err != nil {
			return fmt.Errorf("%s: client send: %w", x.route, err)
		}
		buf := make([]byte, 1024)
		n, err := rc.read(func(fd int) (int, error) { return x.clientRead(fd, buf) })
		if err != nil {
			return fmt.Errorf("%s: client read: %w", x.route, err)
		}
		if want := fmt.Sprintf("HTTP/1.1 %d ", x.status); !bytes.HasPrefix(buf[:n], []byte(want)) {
			return fmt.Errorf("%s: response %q", x.route, buf[:n])
		}
		c.Close()
		if err := <-errc; err != nil {
			return fmt.Errorf("%s: server: %w", x.route, err)
		}
	}
	return nil
}

func rawServe(ln net.Listener, x rawExchange) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	rc, err := newRawConn(c)
	if err != nil {
		return err
	}
	buf := make([]byte, 1024)
	n, err := rc.read(func(fd int) (int, error) { return x.serverRead(fd, buf) })
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte(x.method+" "+x.route)) {
		return fmt.Errorf("request %q", buf[:n])
	}
	resp := []byte(fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", x.status, http.StatusText(x.status)))
	_, err = rc.write(func(fd int) (int, error) { return x.serverSend(fd, resp) })
	return err
}

// TestHTTPSyscalls checks HTTP sent and received with recvfrom, readv,
// sendto, writev and sendmsg only (each has its own program on the
// syscall path, and its own argument layout on the socket path).
func TestHTTPSyscalls(t *testing.T) { forEachHTTPHook(t, testHTTPSyscalls) }

func testHTTPSyscalls(t *testing.T, hook string) {
	env := startCollector(t, spansConfig(hook))
	const unit = "vigil-ebpf-test-rawhttp.service"
	cmd := helperCmd(t, testCgroup(t, unit), "raw-http", "")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("raw HTTP helper: %v\n%s", err, out)
	}
	for _, x := range rawExchanges {
		for _, kind := range []string{"server", "client"} {
			labels := map[string]string{"unit": unit, "kind": kind, "method": x.method, "route": x.route, "status_class": statusClass(x.status)}
			testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_http_requests_total%v", labels), func() bool {
				return env.value(t, "vigil_http_requests_total", labels) >= 1
			})
			if got := env.value(t, "vigil_http_requests_total", labels); got != 1 {
				t.Errorf("vigil_http_requests_total%v = %v, want 1", labels, got)
			}
		}
	}
	// The programs that saw them lost nothing.
	progs := []string{"http_sock_send", "http_sock_recv"}
	if hook == "syscalls" {
		progs = []string{"http_exit_recvfrom", "http_exit_readv", "http_sendto", "http_writev", "http_sendmsg"}
	}
	for _, p := range progs {
		if v := env.value(t, "vigil_ebpf_events_lost_total", map[string]string{"program": p}); v != 0 {
			t.Errorf("vigil_ebpf_events_lost_total{program=%q} = %v", p, v)
		}
	}
	var spans []ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "spans of the raw exchanges", func() bool {
		spans = env.findSpans(func(s ptrace.Span) bool { return strings.HasPrefix(strAttr(s, "http.route"), "/sendto-readv") })
		return len(spans) >= 2
	})
	for _, s := range spans {
		if strAttr(s, "url.path") != "/sendto-readv" || strAttr(s, "http.response.status_code") != "200" {
			t.Errorf("%s span attributes: %v", s.Kind(), s.Attributes().AsRaw())
		}
	}
}

// A traceparent header far past the first window of the request head (a
// long Authorization header comes first) still joins both spans to the
// caller's trace.
func TestHTTPTraceParentPastFirstWindow(t *testing.T) {
	forEachHTTPHook(t, testHTTPTraceParentPastFirstWindow)
}

func testHTTPTraceParentPastFirstWindow(t *testing.T, hook string) {
	env := startCollector(t, spansConfig(hook))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })

	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+"/long/head", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Go writes headers sorted by name: Authorization before Traceparent.
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("x", 1100))
	req.Header.Set("Traceparent", "00-"+traceID+"-"+parentID+"-01")
	var head bytes.Buffer
	_ = req.Header.Write(&head)
	if i := strings.Index(head.String(), "Traceparent:"); i < 1100 {
		t.Fatalf("traceparent at byte %d of the headers, want past the first two windows", i)
	}
	cl := &http.Client{Transport: &http.Transport{}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	var traced []ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "both spans in the caller's trace", func() bool {
		traced = env.findSpans(func(s ptrace.Span) bool { return s.TraceID().String() == traceID })
		return len(traced) >= 2
	})
	kinds := map[ptrace.SpanKind]bool{}
	for _, s := range traced {
		kinds[s.Kind()] = true
		if s.ParentSpanID().String() != parentID || strAttr(s, "http.route") != "/long/head" {
			t.Errorf("%s span: parent %s route %q", s.Kind(), s.ParentSpanID(), strAttr(s, "http.route"))
		}
	}
	if len(traced) != 2 || !kinds[ptrace.SpanKindServer] || !kinds[ptrace.SpanKindClient] {
		t.Errorf("want one server and one client span in the trace, got %d", len(traced))
	}
}

// TestHTTPClientSpanUnderServerSpan runs a thread-per-request proxy: it
// reads a request, calls a backend from the same OS thread, and answers.
// The client span of the backend call is a child of the proxy's server
// span, in the trace the caller started.
func TestHTTPClientSpanUnderServerSpan(t *testing.T) {
	forEachHTTPHook(t, testHTTPClientSpanUnderServerSpan)
}

func testHTTPClientSpanUnderServerSpan(t *testing.T, hook string) {
	env := startCollector(t, spansConfig(hook))
	backend, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bsrv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("backend"))
	})}
	bdone := make(chan struct{})
	go func() { defer close(bdone); _ = bsrv.Serve(backend) }()
	t.Cleanup(func() { bsrv.Close(); <-bdone })

	proxy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	perr := make(chan error, 1)
	go func() { perr <- threadProxy(proxy, backend.Addr().String()) }()

	const traceID, parentID = "5b8aa5a2d2c872e8321cf37308d69df2", "051581bf3cb55c13"
	req, err := http.NewRequest("GET", "http://"+proxy.Addr().String()+"/front/7", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	cl := &http.Client{Transport: &http.Transport{}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := <-perr; err != nil {
		t.Fatal(err)
	}

	var server, client ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "the proxy's server span and its backend client span", func() bool {
		for _, s := range env.findSpans(func(s ptrace.Span) bool { return s.TraceID().String() == traceID }) {
			switch {
			case s.Kind() == ptrace.SpanKindServer && strAttr(s, "http.route") == "/front/{id}":
				server = s
			case s.Kind() == ptrace.SpanKindClient && strAttr(s, "http.route") == "/backend":
				client = s
			}
		}
		return server != (ptrace.Span{}) && client != (ptrace.Span{})
	})
	if server.ParentSpanID().String() != parentID {
		t.Errorf("server span parent = %s, want the caller's %s", server.ParentSpanID(), parentID)
	}
	if client.ParentSpanID() != server.SpanID() {
		t.Errorf("backend client span parent = %s, want the proxy's server span %s", client.ParentSpanID(), server.SpanID())
	}
}

// threadProxy serves one request on one locked OS thread with blocking
// reads and writes, calling the backend in between, like a
// thread-per-request server.
func threadProxy(ln net.Listener, backend string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	front, err := newRawConn(c)
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, err := front.read(func(fd int) (int, error) { return unix.Read(fd, buf) })
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("GET /front/7 ")) {
		return fmt.Errorf("proxy got %q", buf[:n])
	}
	bc, err := net.Dial("tcp4", backend)
	if err != nil {
		return err
	}
	defer bc.Close()
	back, err := newRawConn(bc)
	if err != nil {
		return err
	}
	breq := []byte("GET /backend HTTP/1.1\r\nHost: backend\r\n\r\n")
	if _, err := back.write(func(fd int) (int, error) { return unix.Write(fd, breq) }); err != nil {
		return err
	}
	if n, err = back.read(func(fd int) (int, error) { return unix.Read(fd, buf) }); err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("backend answered %q", buf[:n])
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	_, err = front.write(func(fd int) (int, error) { return unix.Write(fd, resp) })
	return err
}
