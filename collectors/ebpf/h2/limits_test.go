package h2

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// wire builds one direction's bytes with x/net's own Framer and HPACK
// encoder, for the cases real peers do not produce on demand.
type wire struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func newWire(client bool) *wire {
	w := &wire{}
	if client {
		w.buf.WriteString(Preface)
	}
	w.fr = http2.NewFramer(&w.buf, nil)
	w.fr.AllowIllegalWrites = true
	w.enc = hpack.NewEncoder(&w.hbuf)
	_ = w.fr.WriteSettings()
	return w
}

// block encodes name, value pairs.
func (w *wire) block(kv ...string) []byte {
	w.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = w.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), w.hbuf.Bytes()...)
}

// take returns the bytes written so far.
func (w *wire) take() []byte {
	b := append([]byte(nil), w.buf.Bytes()...)
	w.buf.Reset()
	return b
}

// pair is a server-side decoder fed by a client and a server wire.
type pair struct {
	t      *testing.T
	c      *Conn
	cnt    Counters
	cw, sw *wire
	ex     []Exchange
	ts     uint64
}

func newPair(t *testing.T, lim Limits) *pair {
	p := &pair{t: t, cw: newWire(true), sw: newWire(false)}
	p.c = NewConn(lim, &p.cnt)
	p.flush()
	return p
}

// flush feeds what each side wrote: the client's bytes are the server's
// reads.
func (p *pair) flush() {
	for _, x := range []struct {
		dir Direction
		w   *wire
	}{{Read, p.cw}, {Write, p.sw}} {
		if b := x.w.take(); len(b) > 0 {
			p.ts++
			p.ex = p.c.Feed(p.ex, x.dir, b, len(b), p.ts)
		}
	}
}

func (p *pair) request(id uint32, path string, extra ...string) {
	kv := append([]string{":method", "POST", ":scheme", "http", ":path", path, ":authority", "svc:50051", "content-type", "application/grpc"}, extra...)
	_ = p.cw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.cw.block(kv...), EndHeaders: true})
	_ = p.cw.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0})
}

func (p *pair) response(id uint32, grpcStatus string) {
	_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.sw.block(":status", "200", "content-type", "application/grpc"), EndHeaders: true})
	_ = p.sw.fr.WriteData(id, false, []byte{0, 0, 0, 0, 0})
	_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.sw.block("grpc-status", grpcStatus), EndHeaders: true, EndStream: true})
}

// want checks the exchanges so far (service/method status) and the drops.
func (p *pair) want(drops Counters, exchanges ...string) {
	p.t.Helper()
	var got []string
	for _, e := range p.ex {
		got = append(got, e.GRPCService+"/"+e.GRPCMethod+" "+e.GRPCStatusName())
	}
	if strings.Join(got, ", ") != strings.Join(exchanges, ", ") {
		p.t.Errorf("exchanges %q, want %q", got, exchanges)
	}
	if p.cnt != drops {
		p.t.Errorf("drops %v, want %v", p.cnt, drops)
	}
}

func drops(kv ...any) Counters {
	var c Counters
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(Reason)] = uint64(kv[i+1].(int))
	}
	return c
}

// TestFrameVariants: padding, priority, a PUSH_PROMISE (its block decoded
// to keep HPACK in step, its stream not tracked), a 103 before the final
// response, a trailers-only response, a reset, and a server that writes
// its SETTINGS before the preface is read.
func TestFrameVariants(t *testing.T) {
	p := &pair{t: t, cw: newWire(true), sw: newWire(false)}
	p.c = NewConn(Limits{}, &p.cnt)
	b := p.sw.take()
	p.ex = p.c.Feed(p.ex, Write, b, len(b), 1) // server's SETTINGS first
	p.flush()
	_ = p.cw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, PadLength: 9,
		Priority:      http2.PriorityParam{StreamDep: 0, Weight: 200},
		BlockFragment: p.cw.block(":method", "GET", ":scheme", "http", ":path", "/a/b", ":authority", "x")})
	p.request(3, "/pkg.Svc/Call")
	p.flush()
	_ = p.sw.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true, PadLength: 3,
		BlockFragment: p.sw.block(":method", "GET", ":path", "/pushed", "x-pushed", "yes")})
	_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: p.sw.block(":status", "103", "x-pushed", "yes")})
	_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, PadLength: 200, BlockFragment: p.sw.block(":status", "204", "x-pushed", "yes")})
	_ = p.sw.fr.WriteData(1, true, nil)
	_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, EndHeaders: true, EndStream: true, BlockFragment: p.sw.block(":status", "200")})
	// Trailers-only: status and grpc-status in one block.
	_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true,
		BlockFragment: p.sw.block(":status", "200", "content-type", "application/grpc", "grpc-status", "5", "grpc-message", "no%20such")})
	p.request(5, "/pkg.Svc/Call")
	p.flush()
	_ = p.sw.fr.WriteRSTStream(5, http2.ErrCodeRefusedStream)
	p.flush()
	p.c.Close()
	if len(p.ex) != 3 || p.cnt != (Counters{}) {
		t.Fatalf("exchanges %+v, drops %v", p.ex, p.cnt)
	}
	e := p.ex[0]
	if e.GRPC || e.Method != "GET" || e.Path != "/a/b" || e.Status != 204 || e.Side != Server || e.Route() != "/a/b" {
		t.Errorf("padded request, 103 then 204: %+v", e)
	}
	e = p.ex[1]
	if !e.GRPC || e.GRPCService != "pkg.Svc" || e.GRPCMethod != "Call" || e.GRPCStatusName() != "NOT_FOUND" || e.GRPCMessage != "no%20such" || e.Status != 200 {
		t.Errorf("trailers-only: %+v", e)
	}
	e = p.ex[2]
	if !e.Reset || e.ResetCode != uint32(http2.ErrCodeRefusedStream) || e.GRPCStatusName() != "UNAVAILABLE" || e.Status != 0 {
		t.Errorf("refused stream: %+v", e)
	}
}

// TestTableSize: a dynamic table size update within the cap is followed;
// one above it loses the connection, whatever SETTINGS said.
func TestTableSize(t *testing.T) {
	p := newPair(t, Limits{MaxTableSize: 8192})
	p.sw.enc.SetMaxDynamicTableSizeLimit(8192)
	p.sw.enc.SetMaxDynamicTableSize(8192)
	p.request(1, "/pkg.Svc/A")
	p.response(1, "0")
	p.flush()
	p.sw.enc.SetMaxDynamicTableSizeLimit(1 << 20)
	p.sw.enc.SetMaxDynamicTableSize(1 << 20)
	p.request(3, "/pkg.Svc/A")
	p.response(3, "0")
	p.flush()
	p.want(drops(TableOverCap, 1, StreamLost, 1), "pkg.Svc/A OK")
	if lost, why := p.c.Lost(); !lost || why != TableOverCap {
		t.Errorf("Lost() = %v, %v", lost, why)
	}
}

// TestContinuationFlood: a header block in one-byte CONTINUATION frames
// decodes the same, in time linear in its size (the pieces are gathered
// before HPACK sees them).
func TestContinuationFlood(t *testing.T) {
	p := newPair(t, Limits{})
	frag := p.cw.block(":method", "POST", ":scheme", "http", ":path", "/pkg.Svc/A", ":authority", "a",
		"content-type", "application/grpc", "x-big", noise(12000))
	_ = p.cw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag[:1]})
	for i := 1; i < len(frag); i++ {
		_ = p.cw.fr.WriteContinuation(1, i == len(frag)-1, frag[i:i+1])
	}
	p.response(1, "0")
	start := time.Now()
	p.flush()
	t.Logf("%d CONTINUATION frames decoded in %v", len(frag)-1, time.Since(start))
	p.want(Counters{}, "pkg.Svc/A OK")
}

// TestStringOverLimit: a header value longer than MaxStringLength loses
// the connection (the rest of its block cannot be decoded).
func TestStringOverLimit(t *testing.T) {
	p := newPair(t, Limits{MaxStringLength: 1000})
	p.request(1, "/pkg.Svc/A", "x-long", strings.Repeat("Q", 1001))
	p.response(1, "0")
	p.flush()
	p.want(drops(StringOverLimit, 1, StreamLost, 1))
}

// TestHeaderListOverLimit: fields past MaxHeaderListSize are decoded but
// not looked at, and the table stays in step: the next request, whose
// fields are now indexed, decodes right.
func TestHeaderListOverLimit(t *testing.T) {
	p := newPair(t, Limits{MaxHeaderListSize: 400})
	var extra []string
	for i := range 10 {
		extra = append(extra, "x-field-"+string(rune('a'+i)), strings.Repeat("v", 40))
	}
	p.request(1, "/pkg.Svc/A", extra...)
	p.response(1, "0")
	p.request(3, "/pkg.Svc/B", "x-field-j", strings.Repeat("v", 40))
	p.response(3, "14")
	p.flush()
	p.want(drops(HeaderListOverLimit, 1), "pkg.Svc/A OK", "pkg.Svc/B UNAVAILABLE")
}

// TestStreamsOverLimit: requests past MaxStreams open streams are not
// tracked; once streams end, new ones are.
func TestStreamsOverLimit(t *testing.T) {
	p := newPair(t, Limits{MaxStreams: 2})
	p.request(1, "/pkg.Svc/A")
	p.request(3, "/pkg.Svc/B")
	p.request(5, "/pkg.Svc/C")
	p.flush()
	if p.c.Streams() != 2 {
		t.Errorf("%d streams tracked", p.c.Streams())
	}
	p.response(5, "0")
	p.response(3, "0")
	p.response(1, "0")
	p.flush()
	p.request(7, "/pkg.Svc/D")
	p.response(7, "0")
	p.flush()
	p.want(drops(StreamsOverLimit, 1), "pkg.Svc/B OK", "pkg.Svc/A OK", "pkg.Svc/D OK")
}

// TestGoAway: streams above the server's GOAWAY last stream ID were not
// processed.
func TestGoAway(t *testing.T) {
	p := newPair(t, Limits{})
	p.request(1, "/pkg.Svc/A")
	p.request(3, "/pkg.Svc/B")
	p.request(5, "/pkg.Svc/C")
	p.flush()
	_ = p.sw.fr.WriteGoAway(1, http2.ErrCodeNo, []byte("bye"))
	p.response(1, "0")
	p.flush()
	p.c.Close()
	p.want(drops(StreamRefused, 2), "pkg.Svc/A OK")
}

// TestUnfinished: streams open at Close are counted.
func TestUnfinished(t *testing.T) {
	p := newPair(t, Limits{})
	p.request(1, "/pkg.Svc/A")
	p.flush()
	p.c.Close()
	p.c.Close()
	p.want(drops(StreamUnfinished, 1))
}

// TestBadFrames: frames that break the framing rules lose the connection.
func TestBadFrames(t *testing.T) {
	for name, write := range map[string]func(w *wire){
		"HEADERS on stream 0": func(w *wire) {
			_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 0, BlockFragment: w.block(":path", "/"), EndHeaders: true})
		},
		"DATA inside a header block": func(w *wire) {
			_ = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(":path", "/")})
			_ = w.fr.WriteData(1, true, nil)
		},
		"CONTINUATION alone":   func(w *wire) { _ = w.fr.WriteContinuation(1, true, w.block(":path", "/")) },
		"SETTINGS of 5 bytes":  func(w *wire) { _ = w.fr.WriteRawFrame(http2.FrameSettings, 0, 0, make([]byte, 5)) },
		"padding past payload": func(w *wire) { _ = w.fr.WriteRawFrame(http2.FrameHeaders, 0x8|0x4, 1, []byte{200, 0x82}) },
		"PING on a stream":     func(w *wire) { _ = w.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8)) },
		"HPACK garbage": func(w *wire) {
			_ = w.fr.WriteRawFrame(http2.FrameHeaders, 0x4, 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := newPair(t, Limits{})
			write(p.cw)
			p.flush()
			lost, why := p.c.Lost()
			if !lost || (why != BadFrame && why != HPACKError) {
				t.Errorf("Lost() = %v, %v", lost, why)
			}
		})
	}
}

// TestGaps: bytes skipped inside a DATA payload cost nothing; skipped
// anywhere needed, they lose the connection.
func TestGaps(t *testing.T) {
	t.Run("inside DATA", func(t *testing.T) {
		p := newPair(t, Limits{})
		p.request(1, "/pkg.Svc/A")
		p.flush()
		_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.sw.block(":status", "200", "content-type", "application/grpc"), EndHeaders: true})
		_ = p.sw.fr.WriteData(1, false, make([]byte, 5000))
		b := p.sw.take()
		p.ex = p.c.Feed(p.ex, Write, b[:511], len(b), 10) // the kernel's window
		p.response(1, "0")
		p.flush()
		p.want(Counters{}, "pkg.Svc/A OK")
	})
	t.Run("header block", func(t *testing.T) {
		p := newPair(t, Limits{})
		p.request(1, "/pkg.Svc/A", "x-pad", noise(2000))
		b := p.cw.take()
		p.ex = p.c.Feed(p.ex, Read, b[:511], len(b), 10)
		p.want(drops(Gap, 1, StreamLost, 1))
	})
	t.Run("trailers after a cut message", func(t *testing.T) {
		// A gRPC response whose message does not fit the window, written
		// with its trailers in one write: the trailers are skipped.
		p := newPair(t, Limits{})
		p.request(1, "/pkg.Svc/A")
		p.flush()
		_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.sw.block(":status", "200", "content-type", "application/grpc"), EndHeaders: true})
		_ = p.sw.fr.WriteData(1, false, make([]byte, 1000))
		_ = p.sw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.sw.block("grpc-status", "0"), EndHeaders: true, EndStream: true})
		b := p.sw.take()
		p.ex = p.c.Feed(p.ex, Write, b[:511], len(b), 10)
		p.want(drops(Gap, 1, StreamLost, 1))
	})
	t.Run("preface", func(t *testing.T) {
		var cnt Counters
		c := NewConn(Limits{}, &cnt)
		c.Feed(nil, Read, []byte(Preface[:10]), 24, 1)
		if lost, why := c.Lost(); !lost || why != Gap {
			t.Errorf("Lost() = %v, %v", lost, why)
		}
	})
}

// TestNoPreface: HTTP/1.1, and an HTTP/2 connection joined late, are not
// decoded.
func TestNoPreface(t *testing.T) {
	for name, feed := range map[string][][2]any{
		"HTTP/1.1": {{Read, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, {Write, "HTTP/1.1 200 OK\r\n\r\n"}},
		"late":     {{Read, "\x00\x00\x05\x01\x05\x00\x00\x00\x03\x82\x86\x84\x41\x8a"}},
		"both sides SETTINGS": {
			{Write, "\x00\x00\x00\x04\x00\x00\x00\x00\x00"}, {Read, "\x00\x00\x00\x04\x00\x00\x00\x00\x00"},
		},
		"SETTINGS ack first": {{Write, "\x00\x00\x00\x04\x01\x00\x00\x00\x00"}},
	} {
		t.Run(name, func(t *testing.T) {
			var cnt Counters
			c := NewConn(Limits{}, &cnt)
			var ex []Exchange
			for _, f := range feed {
				b := []byte(f[1].(string))
				ex = c.Feed(ex, f[0].(Direction), b, len(b), 1)
			}
			if lost, why := c.Lost(); !lost || why != NoPreface || len(ex) != 0 || cnt != drops(NoPreface, 1) {
				t.Errorf("Lost() = %v, %v; %d exchanges; drops %v", lost, why, len(ex), cnt)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for path, want := range map[string]string{
		"/grpc.health.v1.Health/Check": "grpc.health.v1.Health Check",
		"/a/b/c":                       "_OTHER _OTHER",
		"/a":                           "_OTHER _OTHER",
		"/a b/c":                       "_OTHER _OTHER",
		"/" + strings.Repeat("s", MaxNameLength+1) + "/m": "_OTHER _OTHER",
		"/s/m?x=1": "s m",
	} {
		s, m := splitGRPCPath(path)
		if s+" "+m != want {
			t.Errorf("splitGRPCPath(%q) = %q %q", path, s, m)
		}
	}
	for code, want := range map[int]string{-1: "", 0: "OK", 1: "CANCELLED", 14: "UNAVAILABLE", 16: "UNAUTHENTICATED", 17: "UNKNOWN"} {
		if got := CodeName(code); got != want {
			t.Errorf("CodeName(%d) = %q", code, got)
		}
	}
	for v, want := range map[string]bool{"application/grpc": true, "application/grpc+proto": true, "application/grpc;x=1": true, "application/grpc-web": false, "text/plain": false} {
		if isGRPCContentType(v) != want {
			t.Errorf("isGRPCContentType(%q)", v)
		}
	}
	for r := range NumReasons + 1 {
		if r.String() == "" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

// TestTraceparent: a request's traceparent field is kept as sent; two of
// them (invalid in W3C Trace Context) or one past MaxTraceparentLength
// leave none, and a stream without one has none.
func TestTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	p := newPair(t, DefaultLimits())
	p.request(1, "/pkg.Svc/One", "traceparent", tp)
	p.response(1, "0")
	p.request(3, "/pkg.Svc/Two", "traceparent", tp, "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	p.response(3, "0")
	p.request(5, "/pkg.Svc/Long", "traceparent", tp+strings.Repeat("-x", MaxTraceparentLength))
	p.response(5, "0")
	p.request(7, "/pkg.Svc/None")
	p.response(7, "0")
	p.flush()
	p.want(Counters{}, "pkg.Svc/One OK", "pkg.Svc/Two OK", "pkg.Svc/Long OK", "pkg.Svc/None OK")
	for i, want := range []string{tp, "", "", ""} {
		if i < len(p.ex) && p.ex[i].Traceparent != want {
			t.Errorf("%s: traceparent %q, want %q", p.ex[i].Path, p.ex[i].Traceparent, want)
		}
	}
}
