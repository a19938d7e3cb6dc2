package h2

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// transfer is one Read or Write of a connection, as the kernel sees it:
// its direction from the tapped process's side, its bytes and a time.
type transfer struct {
	dir  Direction
	data []byte
	ts   uint64
}

// capture is a connection's transfers (their timestamps are their
// sequence numbers, from 1), recorded by a test tap, and the
// exchanges its live decoder produced.
type capture struct {
	mu        sync.Mutex
	transfers []transfer
	dec       *Conn
	cnt       Counters
	exchanges []Exchange
}

func newCapture() *capture {
	c := &capture{}
	c.dec = NewConn(Limits{}, &c.cnt)
	return c
}

// add records a transfer and hands it to the live decoder.
func (c *capture) add(dir Direction, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := transfer{dir: dir, data: append([]byte(nil), p...), ts: uint64(len(c.transfers) + 1)}
	c.transfers = append(c.transfers, t)
	c.exchanges = c.dec.Feed(c.exchanges, dir, t.data, len(t.data), t.ts)
}

// snapshot returns the transfers recorded so far.
func (c *capture) snapshot() []transfer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]transfer(nil), c.transfers...)
}

// peerTableSize is the live decoder's PeerTableSize.
func (c *capture) peerTableSize(dir Direction) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dec.PeerTableSize(dir)
}

// close closes the live decoder and returns its exchanges.
func (c *capture) close() []Exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dec.Close()
	return c.exchanges
}

// tapConn is the test tap: a net.Conn that hands the bytes of each Read
// and Write, in the same chunks the process passes to the kernel, to a
// capture. A write is recorded before it is sent and a read after it
// returned, the order in which the kernel's socket tracepoints see them.
type tapConn struct {
	net.Conn
	cap *capture
}

func (t *tapConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.cap.add(Read, p[:n])
	}
	return n, err
}

func (t *tapConn) Write(p []byte) (int, error) {
	t.cap.add(Write, p)
	return t.Conn.Write(p)
}

// tapListener taps every accepted connection.
type tapListener struct {
	net.Listener
	mu   sync.Mutex
	caps []*capture
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cp := newCapture()
	l.mu.Lock()
	l.caps = append(l.caps, cp)
	l.mu.Unlock()
	return &tapConn{Conn: c, cap: cp}, nil
}

func (l *tapListener) captures() []*capture {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*capture(nil), l.caps...)
}

// tapDialer dials and taps client connections.
type tapDialer struct {
	mu   sync.Mutex
	caps []*capture
}

func (d *tapDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cp := newCapture()
	d.mu.Lock()
	d.caps = append(d.caps, cp)
	d.mu.Unlock()
	return &tapConn{Conn: c, cap: cp}, nil
}

func (d *tapDialer) captures() []*capture {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*capture(nil), d.caps...)
}

// summary counts exchanges by what a metric would label them with.
func summary(exs []Exchange) map[string]int {
	m := map[string]int{}
	for _, e := range exs {
		var k string
		if e.GRPC {
			k = fmt.Sprintf("%s grpc %s/%s %s", e.Side, e.GRPCService, e.GRPCMethod, e.GRPCStatusName())
		} else {
			k = fmt.Sprintf("%s http %s %s %d", e.Side, e.Method, e.Route(), e.Status)
		}
		if e.Reset {
			k += " reset"
		}
		m[k]++
	}
	return m
}

func diffSummary(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %q: got %d, want %d", what, k, got[k], want[k])
		}
	}
}

// sided prefixes the keys of a summary with a side.
func sided(side Side, m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[side.String()+" "+k] = v
	}
	return out
}

// healthWithDown is the stock health server, except that service "down"
// answers UNAVAILABLE.
type healthWithDown struct{ *health.Server }

func (h healthWithDown) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if in.Service == "down" {
		return nil, status.Error(codes.Unavailable, "down for the test")
	}
	return h.Server.Check(ctx, in)
}

// grpcRun is what runGRPC sent and what the taps recorded.
type grpcRun struct {
	want           map[string]int // without side
	client, server *capture
}

// runGRPC makes the calls of the gRPC tests on one connection between a
// real grpc-go client and server, both tapped.
func runGRPC(t testing.TB) grpcRun {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &tapListener{Listener: ln}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, healthWithDown{hs})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tl) }()

	var td tapDialer
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(td.dial))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	want := map[string]int{}
	check := func(service string, n int, code codes.Code, md metadata.MD) {
		for range n {
			c := ctx
			if md != nil {
				c = metadata.NewOutgoingContext(ctx, md)
			}
			_, err := hc.Check(c, &healthpb.HealthCheckRequest{Service: service})
			if status.Code(err) != code {
				t.Fatalf("Check(%q): %v, want %v", service, err, code)
			}
		}
		want["grpc grpc.health.v1.Health/Check "+CodeName(int(code))] += n
	}
	check("", 10, codes.OK, nil)
	check("up", 5, codes.OK, nil)
	check("nope", 4, codes.NotFound, nil)
	check("down", 3, codes.Unavailable, nil)
	for range 2 {
		if _, err := hc.List(ctx, &healthpb.HealthListRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	want["grpc grpc.health.v1.Health/List OK"] += 2
	for range 2 {
		err := cc.Invoke(ctx, "/vigil.test.Nothing/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("unknown service: %v", err)
		}
	}
	want["grpc vigil.test.Nothing/Call UNIMPLEMENTED"] += 2
	// A server stream cancelled by the client after its first message:
	// the client resets the stream (RST_STREAM CANCEL).
	wctx, wcancel := context.WithCancel(ctx)
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "up"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	wcancel()
	if _, err := w.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Watch after cancel: %v", err)
	}
	want["grpc grpc.health.v1.Health/Watch CANCELLED reset"]++
	// Headers larger than a frame (16 KiB): HEADERS + CONTINUATION.
	big := metadata.Pairs("x-big-1", noise(8000), "x-big-2", noise(8000), "x-big-3", noise(8000), "x-big-4", noise(8000))
	check("up", 2, codes.OK, big)
	check("", 1, codes.OK, nil)

	_ = cc.Close()
	srv.Stop()
	<-done
	cs, ss := td.captures(), tl.captures()
	if len(cs) != 1 || len(ss) != 1 {
		t.Fatalf("%d client and %d server connections, want 1 each", len(cs), len(ss))
	}
	return grpcRun{want: want, client: cs[0], server: ss[0]}
}

// TestGRPC decodes a real grpc-go client and server talking over
// loopback, from both ends, and checks every call is seen once with its
// service, method and status.
func TestGRPC(t *testing.T) {
	r := runGRPC(t)
	for _, c := range []struct {
		side Side
		cap  *capture
	}{{Client, r.client}, {Server, r.server}} {
		exs := c.cap.close()
		diffSummary(t, c.side.String()+" side", summary(exs), sided(c.side, r.want))
		if c.cap.cnt != (Counters{}) {
			t.Errorf("%s side drops: %v", c.side, c.cap.cnt)
		}
		for _, e := range exs {
			if e.Start == 0 || e.End < e.Start || (e.Response != 0 && (e.Response < e.Start || e.End < e.Response)) {
				t.Errorf("%s side, stream %d: times %d %d %d", c.side, e.StreamID, e.Start, e.Response, e.End)
			}
			if e.Method != "POST" || e.Authority == "" || (!e.Reset && e.Status != 200) {
				t.Errorf("%s side, stream %d: %+v", c.side, e.StreamID, e)
			}
			if e.GRPCStatusName() == "UNAVAILABLE" && e.GRPCMessage != "down for the test" {
				t.Errorf("grpc-message %q", e.GRPCMessage)
			}
		}
	}
	if n := countContinuations(t, r.client, Write); n == 0 {
		t.Error("the large headers were not sent with CONTINUATION frames")
	}
}

// TestMidConnection replays the real gRPC and HTTP/2 captures from every
// transfer on: a capture that starts after the first request decodes
// nothing (counted as no_preface), and whatever a partial capture decodes
// is exactly what the full one decoded.
func TestMidConnection(t *testing.T) {
	g, h := runGRPC(t), runHTTP(t)
	for _, cp := range []*capture{g.client, g.server, h.client, h.server} {
		full := replay(cp.snapshot(), 0)
		firstHeaders := -1
		trs := cp.snapshot()
		for i, tr := range trs {
			if i > 0 {
				var cnt Counters
				got := replayFrom(trs[i:], 0, &cnt)
				checkSubset(t, fmt.Sprintf("capture from transfer %d", i), got.exchanges, full.exchanges)
				if firstHeaders >= 0 && (len(got.exchanges) != 0 || cnt[NoPreface] != 1) {
					t.Errorf("capture from transfer %d (after the first request): %d exchanges, drops %v", i, len(got.exchanges), cnt)
				}
			}
			if firstHeaders < 0 && hasFrame(tr.data, frameHeaders) {
				firstHeaders = i
			}
		}
	}
}

// TestGRPCKernelWindows replays the real capture as the kernel captures
// it today: of each transfer of 512 bytes or more, the first 511 bytes
// (VIGIL_HTTP_WINDOW in bpf/http.h) and its size. What is decoded must be
// right; what is lost is logged.
func TestGRPCKernelWindows(t *testing.T) {
	r := runGRPC(t)
	total := 0
	for _, n := range r.want {
		total += n
	}
	for _, c := range []struct {
		side Side
		cap  *capture
	}{{Client, r.client}, {Server, r.server}} {
		full := replay(c.cap.snapshot(), 0)
		got := replay(c.cap.snapshot(), 511)
		checkSubset(t, c.side.String()+" side, 511-byte windows", got.exchanges, full.exchanges)
		lost, why := got.conn.Lost()
		t.Logf("%s side with 511-byte windows: %d of %d exchanges decoded; lost %v (%v); drops %v; missing: %v",
			c.side, len(got.exchanges), total, lost, why, got.cnt, missing(got.exchanges, full.exchanges))
		if lost && why != Gap {
			t.Errorf("%s side lost for %v, want gap", c.side, why)
		}
		// The calls before the large headers fit in 511 bytes a transfer;
		// the first large HEADERS is cut, which loses the connection: it
		// and the calls after it are not decoded.
		checkLostAtBigHeaders(t, c.side, got, full, 3)
	}
}

// checkLostAtBigHeaders checks that a window replay decoded exactly the
// exchanges that ended before the transfer that lost the connection, and
// that the last n requests (those with large headers and after) are not
// among them.
func checkLostAtBigHeaders(t *testing.T, side Side, got, full *replayed, n int) {
	t.Helper()
	if got.lostAt == 0 {
		t.Fatalf("%s side: connection not lost", side)
	}
	// Exchanges that ended in that transfer, before the cut, count too.
	before, upTo := 0, 0
	for _, e := range full.exchanges {
		if e.End < got.lostAt {
			before++
		}
		if e.End <= got.lostAt {
			upTo++
		}
	}
	if len(got.exchanges) < before || len(got.exchanges) > upTo || len(got.exchanges) > len(full.exchanges)-n {
		t.Errorf("%s side: %d exchanges decoded, want %d to %d of %d (the last %d lost)", side, len(got.exchanges), before, upTo, len(full.exchanges), n)
	}
}

// lostReason describes Lost's result.
func lostReason(lost bool, why Reason) string {
	if !lost {
		return "no"
	}
	return why.String()
}

// replayed is a replay's result.
type replayed struct {
	conn      *Conn
	cnt       Counters
	exchanges []Exchange
	lostAt    uint64 // timestamp of the transfer that lost the connection
}

// replay feeds transfers to a new decoder, each cut as the kernel cuts it
// when window > 0.
func replay(trs []transfer, window int) *replayed {
	var cnt Counters
	r := replayFrom(trs, window, &cnt)
	r.cnt = cnt
	return r
}

func replayFrom(trs []transfer, window int, cnt *Counters) *replayed {
	r := &replayed{conn: NewConn(Limits{}, cnt)}
	for _, tr := range trs {
		data := tr.data
		if window > 0 && len(data) > window {
			data = data[:window]
		}
		r.exchanges = r.conn.Feed(r.exchanges, tr.dir, data, len(tr.data), tr.ts)
		if lost, _ := r.conn.Lost(); lost && r.lostAt == 0 {
			r.lostAt = tr.ts
		}
	}
	r.conn.Close()
	return r
}

// checkSubset checks that every exchange of got is one of want, equal in
// every field.
func checkSubset(t *testing.T, what string, got, want []Exchange) {
	t.Helper()
	byID := map[uint32]Exchange{}
	for _, e := range want {
		byID[e.StreamID] = e
	}
	for _, e := range got {
		if w, ok := byID[e.StreamID]; !ok || w != e {
			t.Errorf("%s: exchange %+v, the full capture has %+v", what, e, w)
		}
	}
}

// missing lists the exchanges of full that got lacks.
func missing(got, full []Exchange) []string {
	seen := map[uint32]bool{}
	for _, e := range got {
		seen[e.StreamID] = true
	}
	var out []string
	for _, e := range full {
		if !seen[e.StreamID] {
			out = append(out, fmt.Sprintf("%d %s %s", e.StreamID, e.Path, e.GRPCStatusName()))
		}
	}
	return out
}

// frameWalk calls fn for each frame header in one direction's bytes.
func frameWalk(b []byte, fn func(typ, flags uint8, payload []byte)) {
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		if len(b) < 9+n {
			return
		}
		fn(b[3], b[4], b[9:9+n])
		b = b[9+n:]
	}
}

// stream returns a direction's bytes, without the preface.
func streamOf(cp *capture, dir Direction) []byte {
	var b []byte
	for _, tr := range cp.snapshot() {
		if tr.dir == dir {
			b = append(b, tr.data...)
		}
	}
	return []byte(strings.TrimPrefix(string(b), Preface))
}

func countContinuations(t *testing.T, cp *capture, dir Direction) int {
	t.Helper()
	n := 0
	frameWalk(streamOf(cp, dir), func(typ, _ uint8, _ []byte) {
		if typ == frameContinuation {
			n++
		}
	})
	return n
}

// hasFrame reports whether a transfer holds a frame of type typ at a frame
// boundary it starts with (good enough for the small transfers of tests).
func hasFrame(b []byte, typ uint8) bool {
	found := false
	frameWalk([]byte(strings.TrimPrefix(string(b), Preface)), func(ft, _ uint8, _ []byte) {
		if ft == typ {
			found = true
		}
	})
	return found
}

// httpRun is what runHTTP sent and what the taps recorded.
type httpRun struct {
	want           map[string]int
	client, server *capture
}

// runHTTP makes the calls of the HTTP/2 tests between net/http's client
// and server speaking unencrypted HTTP/2 (prior knowledge) over loopback.
// The client announces a 1024-byte HPACK table, so the server's encoder
// shrinks its table with a dynamic table size update.
func runHTTP(t testing.TB) httpRun {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &tapListener{Listener: ln}
	var h2only http.Protocols
	h2only.SetUnencryptedHTTP2(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("POST /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	// Frames of at most 16 KiB (Go's server reads 1 MiB ones by default),
	// so that large headers are sent as HEADERS + CONTINUATION.
	srv := &http.Server{Handler: mux, Protocols: &h2only, HTTP2: &http.HTTP2Config{MaxReadFrameSize: 16384}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tl) }()

	var td tapDialer
	tr := &http.Transport{Protocols: &h2only, HTTP2: &http.HTTP2Config{MaxDecoderHeaderTableSize: 1024},
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return td.dial(ctx, addr) }}
	client := &http.Client{Transport: tr}
	base := "http://" + ln.Addr().String()
	want := map[string]int{}
	do := func(method, path string, n, code int, hdr http.Header, route string) {
		for i := range n {
			p := strings.ReplaceAll(path, "{i}", fmt.Sprint(1000+i))
			req, _ := http.NewRequest(method, base+p, strings.NewReader("body"))
			for k, v := range hdr {
				req.Header[k] = v
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != code || resp.ProtoMajor != 2 {
				t.Fatalf("%s %s: %s %s", method, p, resp.Proto, resp.Status)
			}
		}
		want[fmt.Sprintf("http %s %s %d", method, route, code)] += n
	}
	do("GET", "/ok", 10, 200, nil, "/ok")
	do("POST", "/users/{i}", 5, 201, nil, "/users/{id}")
	do("GET", "/missing", 3, 404, nil, "/missing")
	do("GET", "/fail", 2, 503, nil, "/fail")
	// A request the client gives up on: it resets the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/slow", nil)
	if _, err := client.Do(req); err == nil {
		t.Fatal("slow request answered")
	}
	cancel()
	want["http GET /slow 0 reset"]++
	// Headers larger than a frame: HEADERS + CONTINUATION.
	do("GET", "/ok", 2, 200, http.Header{"X-Big-1": {noise(10000)}, "X-Big-2": {noise(10000)}, "X-Big-3": {noise(10000)}}, "/ok")
	do("GET", "/ok", 1, 200, nil, "/ok")
	tr.CloseIdleConnections()
	_ = srv.Close()
	<-done
	cs, ss := td.captures(), tl.captures()
	if len(cs) != 1 || len(ss) != 1 {
		t.Fatalf("%d client and %d server connections, want 1 each", len(cs), len(ss))
	}
	return httpRun{want: want, client: cs[0], server: ss[0]}
}

// TestHTTP2 decodes net/http's HTTP/2 client and server from both ends:
// every request once, with method, route and status, a reset, headers
// spanning CONTINUATION frames, and a dynamic table size update.
func TestHTTP2(t *testing.T) {
	r := runHTTP(t)
	for _, c := range []struct {
		side Side
		cap  *capture
	}{{Client, r.client}, {Server, r.server}} {
		exs := c.cap.close()
		diffSummary(t, c.side.String()+" side", summary(exs), sided(c.side, r.want))
		if c.cap.cnt != (Counters{}) {
			t.Errorf("%s side drops: %v", c.side, c.cap.cnt)
		}
		for _, e := range exs {
			if e.GRPC || e.GRPCStatus != -1 || e.GRPCStatusName() != "" || !strings.HasPrefix(e.Authority, "127.0.0.1:") {
				t.Errorf("%s side: %+v", c.side, e)
			}
		}
	}
	if n := countContinuations(t, r.client, Write); n == 0 {
		t.Error("the large headers were not sent with CONTINUATION frames")
	}
	// The server's responses shrink the client's table to 1024 bytes.
	updates := 0
	frameWalk(streamOf(r.client, Read), func(typ, flags uint8, p []byte) {
		if typ != frameHeaders {
			return
		}
		if flags&flagPadded != 0 {
			p = p[1:]
		}
		if flags&flagPriority != 0 {
			p = p[5:]
		}
		if len(p) > 0 && p[0]&0xe0 == 0x20 {
			updates++
		}
	})
	if updates == 0 {
		t.Error("no dynamic table size update in the server's responses")
	}
	if got := r.server.peerTableSize(Read); got != 1024 {
		t.Errorf("client's SETTINGS_HEADER_TABLE_SIZE = %d, want 1024", got)
	}
}

// TestHTTP2KernelWindows replays net/http's capture cut to the kernel's
// 511-byte windows.
func TestHTTP2KernelWindows(t *testing.T) {
	r := runHTTP(t)
	total := 0
	for _, n := range r.want {
		total += n
	}
	for _, c := range []struct {
		side Side
		cap  *capture
	}{{Client, r.client}, {Server, r.server}} {
		full := replay(c.cap.snapshot(), 0)
		got := replay(c.cap.snapshot(), 511)
		checkSubset(t, c.side.String()+" side, 511-byte windows", got.exchanges, full.exchanges)
		lost, why := got.conn.Lost()
		t.Logf("%s side with 511-byte windows: %d of %d exchanges decoded; lost %v (%v); drops %v; missing: %v",
			c.side, len(got.exchanges), total, lost, why, got.cnt, missing(got.exchanges, full.exchanges))
		if lost && why != Gap {
			t.Errorf("%s side lost for %v, want gap", c.side, why)
		}
		// As for gRPC: the first request with large headers loses the
		// connection, and the requests after it (and the reset of the
		// request before, when the client wrote it after them).
		checkLostAtBigHeaders(t, c.side, got, full, 3)
	}
}

// noise is n bytes of letters and digits that Huffman coding does not
// shrink much, for headers that must not fit in one frame.
func noise(n int) string {
	const chars = "QXZJKVWqxzjkvw0123456789"
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = chars[x%uint32(len(chars))]
	}
	return string(b)
}

// TestByteByByte feeds a real capture one byte at a time: the same
// exchanges as whole transfers.
func TestByteByByte(t *testing.T) {
	r := runGRPC(t)
	full := replay(r.server.snapshot(), 0)
	var cnt Counters
	c := NewConn(Limits{}, &cnt)
	var got []Exchange
	for _, tr := range r.server.snapshot() {
		for i := range tr.data {
			got = c.Feed(got, tr.dir, tr.data[i:i+1], 1, tr.ts)
		}
	}
	c.Close()
	if len(got) != len(full.exchanges) || cnt != (Counters{}) {
		t.Fatalf("byte by byte: %d exchanges, drops %v; whole transfers: %d", len(got), cnt, len(full.exchanges))
	}
	checkSubset(t, "byte by byte", got, full.exchanges)
}

// TestGRPCConcurrent makes calls from several goroutines at once on one
// connection, so streams interleave and reads hold frames of several
// streams: every call is still seen once from both ends. Cut to the
// kernel's 511-byte windows, what is decoded is right and what is lost is
// logged.
func TestGRPCConcurrent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &tapListener{Listener: ln}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthWithDown{hs})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tl) }()
	var td tapDialer
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(td.dial))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	const workers, calls = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				service, want := "", codes.OK
				switch (w + i) % 3 {
				case 1:
					service, want = "nope", codes.NotFound
				case 2:
					service, want = "down", codes.Unavailable
				}
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service}); status.Code(err) != want {
					errs <- fmt.Errorf("Check(%q): %v", service, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_ = cc.Close()
	srv.Stop()
	<-done
	want := map[string]int{}
	for w := range workers {
		for i := range calls {
			want[[]string{"grpc grpc.health.v1.Health/Check OK", "grpc grpc.health.v1.Health/Check NOT_FOUND",
				"grpc grpc.health.v1.Health/Check UNAVAILABLE"}[(w+i)%3]]++
		}
	}
	cs, ss := td.captures(), tl.captures()
	if len(cs) != 1 || len(ss) != 1 {
		t.Fatalf("%d client and %d server connections, want 1 each", len(cs), len(ss))
	}
	for _, c := range []struct {
		side Side
		cap  *capture
	}{{Client, cs[0]}, {Server, ss[0]}} {
		exs := c.cap.close()
		diffSummary(t, c.side.String()+" side", summary(exs), sided(c.side, want))
		if c.cap.cnt != (Counters{}) {
			t.Errorf("%s side drops: %v", c.side, c.cap.cnt)
		}
		trs := c.cap.snapshot()
		long := 0
		for _, tr := range trs {
			if len(tr.data) > 511 {
				long++
			}
		}
		full := replay(trs, 0)
		got := replay(trs, 511)
		checkSubset(t, c.side.String()+" side, 511-byte windows", got.exchanges, full.exchanges)
		lost, why := got.conn.Lost()
		t.Logf("%s side: %d transfers, %d longer than 511 bytes; with 511-byte windows %d of %d exchanges decoded; lost: %v",
			c.side, len(trs), long, len(got.exchanges), workers*calls, lostReason(lost, why))
	}
}
