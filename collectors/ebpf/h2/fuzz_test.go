package h2

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Fuzz input: records of [control][length][length bytes]. Control's low
// bit is the direction; the rest, times 16, is how many bytes of the
// transfer were not captured after the record's bytes.

// encodeTransfers turns transfers into fuzz input, cut as the kernel cuts
// them when window > 0.
func encodeTransfers(trs []transfer, window int) []byte {
	var b []byte
	for _, tr := range trs {
		data, skip := tr.data, 0
		if window > 0 && len(data) > window {
			data, skip = data[:window], len(data)-window
		}
		for len(data) > 0 {
			n := min(len(data), 255)
			ctl := byte(tr.dir)
			if n == len(data) {
				ctl |= byte(min(skip/16, 127)) << 1
			}
			b = append(b, ctl, byte(n))
			b = append(b, data[:n]...)
			data = data[n:]
		}
	}
	return b
}

type fuzzRecord struct {
	dir  Direction
	data []byte
	skip int
}

func decodeFuzz(b []byte) []fuzzRecord {
	var recs []fuzzRecord
	for len(b) >= 2 {
		ctl, n := b[0], int(b[1])
		b = b[2:]
		n = min(n, len(b))
		recs = append(recs, fuzzRecord{dir: Direction(ctl & 1), data: b[:n], skip: int(ctl>>1) * 16})
		b = b[n:]
	}
	return recs
}

// fuzzLimits are small, so that fuzzing reaches them.
var fuzzLimits = Limits{MaxTableSize: 4096, MaxStringLength: 512, MaxHeaderListSize: 1024, MaxStreams: 4}

// FuzzConn feeds arbitrary transfers to a decoder: it must not panic,
// must keep within its limits, must lose a connection at most once, and
// must decode the same whether a transfer comes whole or byte by byte. The
// seed corpus is real captures of grpc-go and net/http, whole, cut to the
// kernel's windows and joined late.
func FuzzConn(f *testing.F) {
	// Seeds are cut to 4 KiB (the preface, SETTINGS and the first
	// exchanges): big inputs slow the fuzzer down.
	seed := func(b []byte) { f.Add(b[:min(len(b), 4096)]) }
	for _, trs := range [][]transfer{runGRPC(f).server.snapshot(), runHTTP(f).client.snapshot()} {
		seed(encodeTransfers(trs, 0))
		seed(encodeTransfers(trs, 511))
		seed(encodeTransfers(trs[len(trs)/2:], 0))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		recs := decodeFuzz(in)
		var cntA, cntB Counters
		a, b := NewConn(fuzzLimits, &cntA), NewConn(fuzzLimits, &cntB)
		var exA, exB []Exchange
		for i, r := range recs {
			ts := uint64(i + 1)
			exA = a.Feed(exA, r.dir, r.data, len(r.data)+r.skip, ts)
			for j := range r.data {
				exB = b.Feed(exB, r.dir, r.data[j:j+1], 1, ts)
			}
			if r.skip > 0 {
				exB = b.Feed(exB, r.dir, nil, r.skip, ts)
			}
			if a.Streams() > fuzzLimits.MaxStreams {
				t.Fatalf("%d streams tracked", a.Streams())
			}
		}
		a.Close()
		b.Close()
		if !slices.Equal(exA, exB) || cntA != cntB {
			t.Fatalf("whole transfers and byte by byte differ:\n%+v %v\n%+v %v", exA, cntA, exB, cntB)
		}
		var conn uint64
		for _, r := range []Reason{NoPreface, Gap, BadFrame, HPACKError, TableOverCap, StringOverLimit} {
			conn += cntA[r]
		}
		if conn > 1 {
			t.Fatalf("connection lost %d times: %v", conn, cntA)
		}
		for _, e := range exA {
			checkBounded(t, e)
		}
	})
}

// checkBounded checks an exchange's fields are within their bounds.
func checkBounded(t *testing.T, e Exchange) {
	t.Helper()
	bad := len(e.Path) > MaxPathLength || len(e.Authority) > MaxAuthorityLength || len(e.GRPCMessage) > MaxMessageLength ||
		len(e.GRPCService) > MaxNameLength || len(e.GRPCMethod) > MaxNameLength ||
		e.StreamID&1 == 0 || e.Side == SideUnknown || methodName(e.Method) != e.Method ||
		(e.GRPC && (e.GRPCStatus < 0 || e.GRPCService == "")) || (!e.GRPC && e.GRPCStatus != -1) ||
		e.End < e.Start || e.Status < 0 || e.Status > 999
	if bad {
		t.Fatalf("exchange out of bounds: %+v", e)
	}
}

// recordGRPCCalls records the server side of n unary health checks on one
// connection.
func recordGRPCCalls(tb testing.TB, n int) []transfer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tl := &tapListener{Listener: ln}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tl) }()
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	for range n {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			tb.Fatal(err)
		}
	}
	_ = cc.Close()
	srv.Stop()
	<-done
	return tl.captures()[0].snapshot()
}

// BenchmarkGRPCExchange decodes the server side of 1,000 real unary gRPC
// calls on one connection per iteration, and reports the cost per
// exchange.
func BenchmarkGRPCExchange(b *testing.B) {
	const calls = 1000
	trs := recordGRPCCalls(b, calls)
	benchReplay(b, trs, calls)
}

// recordHTTPCalls records the server side of n GET requests of net/http's
// client on one unencrypted HTTP/2 connection.
func recordHTTPCalls(tb testing.TB, n int) []transfer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tl := &tapListener{Listener: ln}
	var h2only http.Protocols
	h2only.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &h2only, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tl) }()
	tr := &http.Transport{Protocols: &h2only}
	client := &http.Client{Transport: tr}
	for i := range n {
		resp, err := client.Get("http://" + ln.Addr().String() + "/users/" + strconv.Itoa(i))
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	tr.CloseIdleConnections()
	_ = srv.Close()
	<-done
	return tl.captures()[0].snapshot()
}

// BenchmarkHTTP2Exchange decodes the server side of 1,000 real HTTP/2
// GET requests of net/http on one connection per iteration.
func BenchmarkHTTP2Exchange(b *testing.B) {
	const calls = 1000
	benchReplay(b, recordHTTPCalls(b, calls), calls)
}

func benchReplay(b *testing.B, trs []transfer, want int) {
	var cnt Counters
	ex := make([]Exchange, 0, want)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for b.Loop() {
		c := NewConn(Limits{}, &cnt)
		ex = ex[:0]
		for _, tr := range trs {
			ex = c.Feed(ex, tr.dir, tr.data, len(tr.data), tr.ts)
		}
		c.Close()
		if len(ex) != want {
			b.Fatalf("%d exchanges, want %d", len(ex), want)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	per := float64(b.N) * float64(want)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/exchange")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/per, "allocs/exchange")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/per, "B/exchange")
}
